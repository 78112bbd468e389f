"""The tracker: record one priced call, memory per history record, summary over a million records.

`record()` is compared with a minimal locked counter (the floor any thread-safe tracker pays) and
with `price()` alone, measured in the same run; with LangChain's unpriced
`UsageMetadataCallbackHandler` too when langchain-core is installed.
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
import timeit
import tracemalloc
from collections.abc import Callable

import tokentrail as tt
from _timing import per_call_us
from tokentrail._record import Record
from tokentrail.scope import scope
from tokentrail.tracker import Tracker

AGENTS = ("researcher", "writer", "reviewer", "planner")
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5")


def usage_pool(size: int = 256) -> list[tt.Usage]:
    """Distinct, realistic usages built before timing starts."""
    return [
        tt.Usage(
            input_tokens=800 + i * 37,
            output_tokens=120 + i * 11,
            cache_read_tokens=(800 + i * 37) // 2 if i % 3 == 0 else 0,
            reasoning_tokens=i % 50,
        )
        for i in range(size)
    ]


# -- record one call ---------------------------------------------------------------------------------


def record_call() -> Callable[[], object]:
    tracker = Tracker()
    usage = usage_pool(1)[0]
    entered = scope(agent="researcher", session="bench")
    entered.__enter__()  # the call is made inside an agent scope, as in an instrumented app
    return lambda: tracker.record(usage, "gpt-4o", duration_ms=850.0)


def price_only() -> Callable[[], object]:
    usage = usage_pool(1)[0]
    return lambda: tt.price(usage, "gpt-4o")


def locked_counter_floor() -> Callable[[], object]:
    """The least a thread-safe tracker can do: add the call's tokens to shared counters under a lock."""
    lock = threading.Lock()
    totals = [0, 0, 0]
    usage = usage_pool(1)[0]

    def count() -> None:
        with lock:
            totals[0] += 1
            totals[1] += usage.input_tokens
            totals[2] += usage.output_tokens

    return count


def langchain_callback() -> Callable[[], object] | None:
    try:
        from langchain_core.callbacks import UsageMetadataCallbackHandler
        from langchain_core.messages import AIMessage
        from langchain_core.outputs import ChatGeneration, LLMResult
    except ImportError:
        return None
    handler = UsageMetadataCallbackHandler()
    message = AIMessage(
        content="",
        usage_metadata={"input_tokens": 800, "output_tokens": 120, "total_tokens": 920},
        response_metadata={"model_name": "gpt-4o"},
    )
    result = LLMResult(generations=[[ChatGeneration(message=message)]])
    return lambda: handler.on_llm_end(result)


def cpu_per_call_us(fn: Callable[[], object], *, number: int = 20_000, repeat: int = 3) -> float:
    """Like `per_call_us`, in this thread's CPU time: what other processes on a loaded machine cost
    the run is left out (they still slow it through shared caches)."""
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat, timer=time.thread_time)) / number * 1e6


def record_timings() -> tuple[dict[str, float], dict[str, float]]:
    """Best wall-clock and best CPU µs a call of each contender, over interleaved runs."""
    peers: dict[str, Callable[[], object] | None] = {
        "tracker.record() (priced, in memory)": record_call(),
        "price() alone": price_only(),
        "locked-counter floor": locked_counter_floor(),
        "LangChain UsageMetadataCallbackHandler (unpriced)": langchain_callback(),
    }
    runs: dict[str, list[float]] = {name: [] for name, fn in peers.items() if fn is not None}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(5):  # interleaved, so every contender sees the same machine load
        for name in runs:
            fn = peers[name]
            assert fn is not None
            runs[name].append(per_call_us(fn, number=20_000, repeat=3))
            cpu[name].append(cpu_per_call_us(fn))
    return {name: min(values) for name, values in runs.items()}, {name: min(cpu[name]) for name in cpu}


# -- memory per history record ---------------------------------------------------------------------


def bytes_per_record(count: int = 100_000) -> tuple[float, float]:
    """tracemalloc growth per record kept: in the tracker's store, and as a plain list of Records."""
    usages = usage_pool()
    plan = [(usages[i % len(usages)], MODELS[i % len(MODELS)], AGENTS[i % len(AGENTS)]) for i in range(count)]
    scopes = {agent: scope(agent=agent, session="bench") for agent in AGENTS}
    tracker = Tracker()
    tracker.record(usages[0], "gpt-4o")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for usage, model, agent in plan:
        with scopes[agent]:
            tracker.record(usage, model, duration_ms=500.0)
    tracker.totals()  # the store moves queued records into its columns before any read
    gc.collect()
    ours = (tracemalloc.get_traced_memory()[0] - before) / count
    kept: list[Record] = []
    before = tracemalloc.get_traced_memory()[0]
    for usage, model, agent in plan:
        with scopes[agent]:
            kept.append(tracker.record(usage, model, duration_ms=500.0))
    tracker.totals()
    gc.collect()
    as_objects = (tracemalloc.get_traced_memory()[0] - before) / count
    tracemalloc.stop()
    return ours, as_objects


# -- summary over a million records ------------------------------------------------------------------


def summary_timings(count: int = 1_000_000) -> tuple[float, float, float, float]:
    """Seconds to record `count` calls, then ms for the first summary, a repeated one, and by day."""
    usages = usage_pool()
    tracker = Tracker()
    scopes = [scope(agent=agent, session=f"s{i}") for i, agent in enumerate(AGENTS * 5)]
    started = time.perf_counter()
    for i in range(count):
        with scopes[i % len(scopes)]:
            tracker.record(usages[i % len(usages)], MODELS[i % len(MODELS)], duration_ms=400.0)
    recording = time.perf_counter() - started
    first = _ms(lambda: tracker.summary(by=("agent", "model")))
    again = statistics.median(_ms(lambda: tracker.summary(by=("agent", "model"))) for _ in range(5))
    by_day = statistics.median(_ms(lambda: tracker.summary(by=("day", "session"))) for _ in range(5))
    assert tracker.totals().calls == count
    return recording, first, again, by_day


def _ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main() -> dict[str, float]:
    results: dict[str, float] = {}
    timings, cpu = record_timings()
    floor = timings["locked-counter floor"]
    print(f"record one priced call (best of 5 interleaved runs; load average {os.getloadavg()[0]:.2f}):")
    print(f"  {'':52s} {'wall':>9s}  {'vs floor':>8s}  {'CPU':>9s}")
    for name, us in timings.items():
        print(f"  {name:52s} {us:6.2f} µs  {us / floor:7.1f}×  {cpu[name]:6.2f} µs")
        results[f"record:{name}"] = us
        results[f"record_cpu:{name}"] = cpu[name]
    if "LangChain UsageMetadataCallbackHandler (unpriced)" not in timings:
        print("  (langchain-core not installed: LangChain peer skipped)")
    record_us = timings["tracker.record() (priced, in memory)"]
    print(f"  tracker overhead beyond price(): {record_us - timings['price() alone']:.2f} µs")

    ours, as_objects = bytes_per_record()
    print("memory per history record (tracemalloc, 100,000 records):")
    print(f"  tracker memory store                                  {ours:6.1f} B")
    print(f"  the same Records kept as objects in a list            {as_objects:6.1f} B")
    results["bytes_per_record"] = ours

    recording, first, again, by_day = summary_timings()
    print("summary over 1,000,000 in-memory records:")
    print(f"  recording them took {recording:.1f} s ({recording:.2f} µs a call)")
    print(f"  summary(by=agent,model), first after recording        {first:7.1f} ms")
    print(f"  summary(by=agent,model), repeated                     {again:7.1f} ms")
    print(f"  summary(by=day,session)                               {by_day:7.1f} ms")
    results.update(summary_first_ms=first, summary_again_ms=again, summary_by_day_ms=by_day)
    return results


if __name__ == "__main__":
    main()
