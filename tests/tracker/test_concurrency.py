"""Exact totals under concurrency: many threads and many asyncio tasks, each with its own scope.

Expected totals are computed independently: token sums from the inputs, costs from `price()` summed as
Decimal, never read back from the tracker.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from decimal import Decimal, localcontext

import tokentrail as tt
from tokentrail.scope import propagate, scope
from tokentrail.tracker import Tracker

MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "acme-private")


def usage_for(worker: int, i: int) -> tt.Usage:
    input_tokens = 100 + (worker * 7919 + i * 104_729) % 5_000
    output_tokens = 1 + (worker * 31 + i * 17) % 900
    return tt.Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=input_tokens // 3 if i % 4 == 0 else 0,
        reasoning_tokens=output_tokens // 2 if i % 5 == 0 else 0,
    )


def model_for(worker: int, i: int) -> str:
    return MODELS[(worker + i) % len(MODELS)]


def expected_totals(plan: list[tuple[int, int]]) -> tuple[Counter[str], Decimal, int]:
    tokens: Counter[str] = Counter()
    unpriced = 0
    with localcontext() as exact:
        exact.prec = 200
        cost = Decimal(0)
        for worker, i in plan:
            usage = usage_for(worker, i)
            tokens["input"] += usage.input_tokens
            tokens["output"] += usage.output_tokens
            tokens["cache_read"] += usage.cache_read_tokens
            tokens["reasoning"] += usage.reasoning_tokens
            priced = tt.price(usage, model_for(worker, i))
            if priced.priced:
                cost += priced.total
            else:
                unpriced += 1
    return tokens, cost, unpriced


def assert_matches(row: tt.Usage, tokens: Counter[str]) -> None:
    assert (row.input_tokens, row.output_tokens, row.cache_read_tokens, row.reasoning_tokens) == (
        tokens["input"],
        tokens["output"],
        tokens["cache_read"],
        tokens["reasoning"],
    )


def test_16_threads_by_10000_records_total_exactly() -> None:
    tracker = Tracker()
    threads_count, per_thread = 16, 10_000
    start = threading.Barrier(threads_count)

    def work(worker: int) -> None:
        start.wait()
        for i in range(per_thread):
            tracker.record(usage_for(worker, i), model_for(worker, i))

    threads = []
    for worker in range(threads_count):
        with scope(agent=f"agent-{worker % 4}", session=f"thread-{worker}"):
            threads.append(threading.Thread(target=propagate(work), args=(worker,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    per_worker = [
        expected_totals([(worker, i) for i in range(per_thread)]) for worker in range(threads_count)
    ]
    tokens = sum((expected[0] for expected in per_worker), Counter())
    totals = tracker.totals()
    assert totals.calls == threads_count * per_thread
    assert totals.unpriced_calls == sum(expected[2] for expected in per_worker)
    assert totals.cost == sum(expected[1] for expected in per_worker)
    assert_matches(totals.usage, tokens)
    for worker, (worker_tokens, worker_cost, _) in enumerate(per_worker):
        session = tracker.totals(session=f"thread-{worker}")
        assert session.cost == worker_cost
        assert_matches(session.usage, worker_tokens)
    assert sum(row.calls for row in tracker.summary(by="agent")) == totals.calls
    assert tracker.sink_errors == 0


def test_1000_asyncio_tasks_with_their_own_scopes_total_exactly() -> None:
    tracker = Tracker()
    tasks_count, per_task = 1_000, 20

    async def agent(worker: int) -> None:
        with scope(agent=f"agent-{worker % 10}", session=f"task-{worker}"):
            for i in range(per_task):
                await asyncio.sleep(0)
                tracker.record(usage_for(worker, i), model_for(worker, i))

    async def main() -> None:
        await asyncio.gather(*(agent(worker) for worker in range(tasks_count)))

    asyncio.run(main())
    plan = [(worker, i) for worker in range(tasks_count) for i in range(per_task)]
    tokens, cost, unpriced = expected_totals(plan)
    totals = tracker.totals()
    assert (totals.calls, totals.unpriced_calls) == (tasks_count * per_task, unpriced)
    assert totals.cost == cost
    assert_matches(totals.usage, tokens)
    by_session = {row.group["session"]: row for row in tracker.summary(by="session")}
    assert len(by_session) == tasks_count
    for worker in (0, 123, 999):
        tokens, cost, _ = expected_totals([(worker, i) for i in range(per_task)])
        assert by_session[f"task-{worker}"].cost == cost
        assert_matches(by_session[f"task-{worker}"].usage, tokens)


def test_summaries_while_threads_are_recording_never_lose_records() -> None:
    tracker = Tracker()
    stop = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(tracker.totals().calls)

    def writer(worker: int) -> None:
        for i in range(5_000):
            tracker.record(usage_for(worker, i), "gpt-4o")

    watcher = threading.Thread(target=reader)
    watcher.start()
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    watcher.join()
    assert seen == sorted(seen)  # counts only ever grow
    assert tracker.totals().calls == 20_000
