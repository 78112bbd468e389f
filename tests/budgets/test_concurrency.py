"""Racing for the last dollar: 100 threads, 100 asyncio tasks and 8 processes against a $1.00 hard limit.

Every call reserves its worst case (outputs capped by max_output_tokens), so settled spend must stay at
or under the limit, equal exactly the sum of what the callers settled, and leave no reservation behind
after provider errors and cancellations.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import time
from decimal import Decimal

import pytest

import tokentrail as tt
from tests.budgets import _race
from tests.budgets._race import INPUT_TOKENS, LIMIT, MAX_OUTPUT_TOKENS, MODEL, Tally, race_budget
from tests.budgets.conftest import delivered
from tokentrail._money import UNITS_PER_USD, units_to_decimal
from tokentrail.budgets import Budget, BudgetAlert, BudgetBackend, BudgetManager
from tokentrail.errors import BudgetExceeded

LIMIT_UNITS = int(LIMIT * UNITS_PER_USD)


def assert_held(manager: BudgetManager, settled_units: list[int], refused: int) -> None:
    (row,) = manager.status()
    assert row.reserved_usd == 0 and row.reserved_tokens == 0, "a reservation leaked"
    assert row.spent_usd == units_to_decimal(sum(settled_units)), "settled spend is not exact"
    assert row.spent_usd <= LIMIT
    assert refused > 0, "the race never reached the limit"


def test_100_threads_race_for_the_last_dollar(backend: BudgetBackend) -> None:
    manager = BudgetManager([race_budget()], backend)
    tally = _race.run_threads(manager, threads=100, calls_per_thread=3, seed=1)
    assert tally.failed > 0
    assert_held(manager, tally.settled_units, tally.refused)


def test_100_asyncio_tasks_race_and_cancellations_release(backend: BudgetBackend) -> None:
    manager = BudgetManager([race_budget()], backend)
    tally = Tally()
    cancelled = 0

    async def caller(index: int) -> None:
        rng = random.Random(index)
        for _ in range(3):
            try:
                held = await manager.areserve(
                    MODEL, "openai", INPUT_TOKENS, MAX_OUTPUT_TOKENS, scope={"agent": "racer"}
                )
            except BudgetExceeded:
                tally.count("refused")
                continue
            async with held:
                await asyncio.sleep(rng.random() * 0.02)  # the call; cancellation lands here
                if rng.random() < 1 / 6:
                    tally.count("failed")
                    continue
                usage = tt.Usage(input_tokens=INPUT_TOKENS, output_tokens=rng.randint(0, MAX_OUTPUT_TOKENS))
                cost = tt.price(usage, MODEL, "openai")
                tally.settled(cost.total_units)
                await held.asettle(usage, cost=cost)

    async def race() -> None:
        nonlocal cancelled
        tasks = [asyncio.create_task(caller(i)) for i in range(100)]
        await asyncio.sleep(0.005)
        for task in random.Random(7).sample(tasks, 15):
            cancelled += task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)  # orphaned reservations being released

    asyncio.run(race())
    assert cancelled > 0
    assert_held(manager, tally.settled_units, tally.refused)


@pytest.mark.parametrize("name", ["sqlite", "redis", "postgres", "redis_quota", "sqlite_quota"])
def test_8_processes_race_for_the_last_dollar(name: str, request: pytest.FixtureRequest) -> None:
    backend: BudgetBackend = request.getfixturevalue(f"{name}_backend")
    manager = BudgetManager([race_budget()], backend)
    url = _url_of(backend)
    context = multiprocessing.get_context("spawn")
    with context.Pool(8) as pool:
        results = pool.map(_race.process_worker, [(url, 12, 3, seed) for seed in range(8)])
    settled = [units for units_list, _, _, _ in results for units in units_list]
    refused = sum(r for _, r, _, _ in results)
    assert [errors for _, _, _, errors in results] == [0] * 8, "the back-end failed in a racing process"
    assert_held(manager, settled, refused)


def test_racing_settlements_fire_each_threshold_exactly_once(backend: BudgetBackend) -> None:
    managers = [
        BudgetManager([Budget(limit_usd="0.5", action="warn", name="alerts")], backend) for _ in range(4)
    ]
    alerts: list[BudgetAlert] = []
    for manager in managers:
        manager.subscribe(alerts.append)  # list.append is atomic
    usage = tt.Usage(input_tokens=INPUT_TOKENS, output_tokens=MAX_OUTPUT_TOKENS)
    start = threading.Barrier(40)

    def settle_many(manager: BudgetManager) -> None:
        start.wait()
        for _ in range(2):
            manager.reserve(MODEL, "openai", INPUT_TOKENS, MAX_OUTPUT_TOKENS, scope={}).settle(usage)

    threads = [threading.Thread(target=settle_many, args=(managers[i % 4],)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    delivered(backend)
    assert sorted(a.threshold for a in alerts) == [
        Decimal("0.5"),
        Decimal("0.8"),
        Decimal("0.9"),
        Decimal("1"),
    ]
    (row,) = managers[0].status()
    assert row.spent_usd == Decimal("0.0195") * 80


@pytest.mark.parametrize("name", ["sqlite", "redis", "postgres", "redis_quota", "sqlite_quota"])
def test_a_crashed_process_loses_its_reservation_when_the_lease_passes(
    name: str, request: pytest.FixtureRequest
) -> None:
    backend: BudgetBackend = request.getfixturevalue(f"{name}_backend")
    manager = BudgetManager([race_budget()], backend)
    process = multiprocessing.get_context("spawn").Process(
        target=_race.crash_holding, args=((_url_of(backend), 1.5),)
    )
    process.start()
    process.join(60)
    assert process.exitcode == 3
    (row,) = manager.status()
    assert row.reserved_usd == Decimal("0.9")
    with pytest.raises(BudgetExceeded):
        manager.reserve(MODEL, "openai", 0, 0, scope={"agent": "racer"}, estimate_units=2 * 10**23)
    time.sleep(1.6)  # the dead process's lease (1.5 s, real clock) passes
    manager.reserve(MODEL, "openai", 0, 0, scope={"agent": "racer"}, estimate_units=2 * 10**23).release()
    (row,) = manager.status()
    assert row.reserved_usd == 0


def _url_of(backend: BudgetBackend) -> str:
    from tokentrail.budgets.postgres import PostgresBackend
    from tokentrail.budgets.quota import LocalQuota

    if isinstance(backend, LocalQuota):
        inner = _url_of(backend.inner)
        return f"{inner}{'&' if '?' in inner else '?'}quota={backend.calls}"
    from tokentrail.budgets.redis import RedisBackend
    from tokentrail.budgets.sqlite import SQLiteBackend

    if isinstance(backend, SQLiteBackend):
        return backend.url
    if isinstance(backend, RedisBackend):
        return f"{backend.url}?prefix={backend.prefix}"
    assert isinstance(backend, PostgresBackend)
    # 8 processes share the server's 100 connections with the rest of the suite: 4 each is plenty
    return f"{backend.url}?schema={backend.schema}&max_connections=4"


def test_uncapped_output_overshoots_by_at_most_the_calls_in_flight() -> None:
    """Without a cap the estimate may be short; spend then passes the limit by at most the sum of
    (actual − estimate) of the calls that were in flight together."""
    manager = BudgetManager([race_budget()])
    in_flight = 4
    usage = tt.Usage(input_tokens=INPUT_TOKENS, output_tokens=30_000)  # the estimate counts 10k out
    actual = tt.price(usage, MODEL, "openai")
    refused = False
    while not refused:
        held = []
        try:
            for _ in range(in_flight):
                held.append(manager.reserve(MODEL, "openai", INPUT_TOKENS, 10_000, scope={"agent": "racer"}))
        except BudgetExceeded:
            refused = True
        for reservation in held:
            reservation.settle(usage, cost=actual)
    (row,) = manager.status()
    estimate, _ = manager.estimate(MODEL, "openai", INPUT_TOKENS, 10_000)
    assert estimate is not None
    shortfall = actual.total_units - estimate
    assert row.spent_usd > LIMIT
    assert row.spent_usd - LIMIT <= units_to_decimal(in_flight * shortfall)
    assert row.reserved_usd == 0
