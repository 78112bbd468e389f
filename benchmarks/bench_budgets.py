"""Budgets: reservations per second from 8 processes (SQLite, Redis, Postgres), and the latency a
budget check adds to a call on the in-process back-end, next to a bare lock measured in the same run.

A "reservation" here is the full cycle a guarded call costs: reserve the worst case, then settle the
actual cost. Redis is measured twice: as configured by default (a round trip per reserve and per settle) and with
`?pipeline=1` (settlements sent without waiting; their replies, and alerts, come with the next call).
Redis and Postgres are measured when reachable at TOKENTRAIL_BENCH_REDIS /
TOKENTRAIL_BENCH_POSTGRES (default 127.0.0.1); each run uses its own key prefix / schema and removes it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import tokentrail as tt
from _timing import per_call_us
from tokentrail.budgets import Budget, BudgetManager
from tokentrail.budgets.connect import open_backend

MODEL = "gpt-4o-mini"
PROCESSES = 8
SECONDS = 3.0
REDIS_URL = os.environ.get("TOKENTRAIL_BENCH_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("TOKENTRAIL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


# -- the hot path on the memory back-end ------------------------------------------------------------------


def memory_latency() -> None:
    cost_units = tt.price(tt.Usage(input_tokens=1200, output_tokens=350), MODEL).total_units
    scope = {"agent": "researcher"}
    one = BudgetManager([Budget(limit_usd="1000000", name="global")])
    two = BudgetManager(
        [Budget(limit_usd="1000000", name="global"), Budget(limit_usd="1000000", scope={"agent": "*"})]
    )
    inputs = iter(range(10**9))

    def guarded_call(manager: BudgetManager) -> Callable[[], None]:
        return lambda: manager.reserve(MODEL, "openai", 1200, 500, scope).settle(cost_units=cost_units)

    def guarded_call_new_prompt() -> None:  # a prompt length never seen: the estimate is priced
        one.reserve(MODEL, "openai", 1000 + next(inputs), 500, scope).settle(cost_units=cost_units)

    counter = [0, 0]
    lock = threading.Lock()

    def bare_lock() -> None:  # the floor: two locked counter updates, as reserve + settle need
        with lock:
            counter[0] += cost_units
        with lock:
            counter[1] += cost_units

    floor = per_call_us(bare_lock, number=50_000)
    single = per_call_us(guarded_call(one), number=20_000)
    double = per_call_us(guarded_call(two), number=20_000)
    fresh = per_call_us(guarded_call_new_prompt, number=20_000)
    print(f"memory budget check (reserve + settle), 1 budget:   {single:6.2f} µs per call")
    print(f"  … 2 budgets (global + per agent):                {double:6.2f} µs per call")
    print(f"  … 1 budget, a prompt length not seen before:     {fresh:6.2f} µs per call (estimate priced)")
    print(f"  bare lock floor (two locked updates):            {floor:6.2f} µs per call")
    print(f"  added latency over the floor, 1 budget:          {single - floor:6.2f} µs (goal ≤ 3 µs)")


# -- throughput from 8 processes ------------------------------------------------------------------------------


def _worker(url: str, start_at: float, seconds: float, results: multiprocessing.Queue[int]) -> None:
    manager = BudgetManager([Budget(limit_usd="100000000", name="bench")], url, refresh_seconds=3600)
    cost_units = tt.price(tt.Usage(input_tokens=1200, output_tokens=350), MODEL).total_units
    manager.reserve(MODEL, "openai", 1200, 500, {}).settle(cost_units=cost_units)  # connect, warm up
    while time.time() < start_at:
        time.sleep(0.001)
    done = 0
    stop = start_at + seconds
    while time.time() < stop:
        manager.reserve(MODEL, "openai", 1200, 500, {}).settle(cost_units=cost_units)
        done += 1
    manager.close()
    results.put(done)


def throughput(url: str) -> float:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = context.Queue()
    start_at = time.time() + 4.0  # spawned interpreters import and connect first
    workers = [
        context.Process(target=_worker, args=(url, start_at, SECONDS, results)) for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join()
    return total / SECONDS


def _redis_url() -> str | None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return f"{REDIS_URL}?prefix=tt-bench-{uuid.uuid4().hex[:8]}:"


def _redis_cpu() -> float:
    """Seconds of CPU the Redis server has used (its one command thread and the rest)."""
    import redis

    info = redis.Redis.from_url(REDIS_URL).info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _postgres_url() -> str | None:
    try:
        import psycopg

        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except Exception:
        return None
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}schema=tt_bench_{uuid.uuid4().hex[:8]}"


def _drop(url: str) -> None:
    backend = open_backend(url)
    drop = getattr(backend, "drop", None) or getattr(backend, "drop_schema", None)
    if drop is not None:
        drop()
    backend.close()


def backends_throughput() -> None:
    with tempfile.TemporaryDirectory() as directory:
        targets = [("SQLite", f"sqlite:///{directory}/budgets.db", "≥ 5k/s")]
        redis_url = _redis_url()
        targets.append(("Redis", redis_url, "≥ 20k/s") if redis_url else ("Redis", None, ""))
        if redis_url:  # settlements pipelined: no round trip of their own; alerts arrive at the next call
            targets.append(("Redis, pipelined settle", f"{redis_url}&pipeline=1", "≥ 20k/s"))
            # room for up to 16 calls reserved at a time, the calls counted in memory (budgets/quota.py)
            targets.append(("Redis, quota=16", f"{redis_url}&pipeline=1&quota=16", "≥ 20k/s"))
        postgres_url = _postgres_url()
        targets.append(("Postgres", postgres_url, "") if postgres_url else ("Postgres", None, ""))
        if postgres_url:
            targets.append(("Postgres, quota=16", f"{postgres_url}&quota=16", ""))
        for name, url, goal in targets:
            if url is None:
                print(f"{name:9s} not reachable: skipped")
                continue
            open_backend(url).close()  # create the schema before the processes race to
            server_before = _redis_cpu() if url.startswith("redis") else None
            try:
                rate = throughput(url)
            finally:
                _drop(url)
            note = f" (goal {goal})" if goal else ""
            if server_before is not None:
                per_call = (_redis_cpu() - server_before) / (rate * SECONDS) * 1e6
                note += f"; Redis server CPU {per_call:.1f} µs per reservation"
            print(f"{name:9s} {rate:9,.0f} reservations/s from {PROCESSES} processes{note}", flush=True)


def main() -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{os.cpu_count()} cores, load average {load}; a reservation = reserve the worst case + settle the actual cost"
    )
    memory_latency()
    backends_throughput()
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
