"""The racing callers of the concurrency tests (a module of its own so spawned processes can import it)."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import tokentrail as tt
from tokentrail.budgets import Budget, BudgetBackend, BudgetManager
from tokentrail.errors import BudgetExceeded

MODEL = "gpt-4o-mini"  # 10k in + 30k out at most: $0.0195 worst case per call
INPUT_TOKENS = 10_000
MAX_OUTPUT_TOKENS = 30_000
LIMIT = Decimal("1.00")
BUDGET_NAME = "race"


class ProviderError(Exception):
    """A failing call inside the reservation block."""


def race_budget() -> Budget:
    return Budget(limit_usd=LIMIT, scope={"agent": "racer"}, name=BUDGET_NAME)


class Tally:
    """What the callers saw: settled cost units, refusals and failures (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.settled_units: list[int] = []
        self.refused = 0
        self.failed = 0

    def settled(self, units: int) -> None:
        with self.lock:
            self.settled_units.append(units)

    def count(self, what: str) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)


def one_call(manager: BudgetManager, rng: random.Random, tally: Tally) -> None:
    """Reserve the worst case, then fail (1 in 6) or settle a random actual cost within the cap."""
    try:
        with manager.reserve(
            MODEL, "openai", INPUT_TOKENS, MAX_OUTPUT_TOKENS, scope={"agent": "racer"}
        ) as held:
            if rng.random() < 1 / 6:
                raise ProviderError("the provider failed mid-call")
            usage = tt.Usage(input_tokens=INPUT_TOKENS, output_tokens=rng.randint(0, MAX_OUTPUT_TOKENS))
            cost = tt.price(usage, MODEL, "openai")
            held.settle(usage, cost=cost)
            tally.settled(cost.total_units)
    except BudgetExceeded:
        tally.count("refused")
    except ProviderError:
        tally.count("failed")


def run_threads(manager: BudgetManager, threads: int, calls_per_thread: int, seed: int) -> Tally:
    """`threads` threads released together, each making `calls_per_thread` calls."""
    tally = Tally()
    start = threading.Barrier(threads)

    def caller(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        start.wait()
        for _ in range(calls_per_thread):
            one_call(manager, rng, tally)

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return tally


def process_worker(args: tuple[str, int, int, int]) -> tuple[list[int], int, int, int]:
    """One of the racing processes: opens the back-end by URL and runs its threads.

    Returns the settled units, refusals, failed calls and back-end errors."""
    url, threads, calls_per_thread, seed = args
    from tokentrail.budgets.connect import open_backend

    backend: BudgetBackend = open_backend(url)
    manager = BudgetManager([race_budget()], backend, refresh_seconds=3600)
    try:
        tally = run_threads(manager, threads, calls_per_thread, seed)
    finally:
        manager.close()
        backend.close()  # opened here, so closed here (a quota back-end settles its grants now)
    return tally.settled_units, tally.refused, tally.failed, manager.backend_errors


def crash_holding(args: tuple[str, float]) -> None:
    """Reserve most of the budget, then die without settling or releasing (no cleanup runs)."""
    import os

    from tokentrail.budgets.connect import open_backend

    url, lease_seconds = args
    manager = BudgetManager([race_budget()], open_backend(url), lease_seconds=lease_seconds)
    manager.reserve(MODEL, "openai", 0, 0, scope={"agent": "racer"}, estimate_units=9 * 10**23)  # $0.90
    os._exit(3)
