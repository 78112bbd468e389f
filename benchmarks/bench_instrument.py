"""Added latency of an instrumented OpenAI chat call vs the bare SDK call, against the local MockLLMServer.

Both are measured in the same run, interleaved round by round (bare, then instrumented, same client
settings), best-of-N per-call time; the difference is what `tokentrail.instrument()` adds (capture,
pricing, recording). Issue goal: ≤ 2 % or ≤ 30 µs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import openai

from _timing import machine
from tokentrail.adapters import instrument, uninstrument
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

MESSAGES = [{"role": "user", "content": "How are tokens counted when a prompt is cached?"}]


def _best(fn: Callable[[], object], number: int) -> float:
    """Mean time of one `fn()` over `number` calls, in µs."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number * 1e6


def main(rounds: int = 15, number: int = 40) -> dict[str, float]:
    with MockLLMServer() as server:
        bare_client = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
        tracked_client = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)

        def bare() -> object:
            return bare_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        tracker = Tracker()

        def tracked() -> object:
            return tracked_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        bare_times: list[float] = []
        tracked_times: list[float] = []
        for _ in range(3):  # warm up connections, imports and caches
            bare()
        for _ in range(rounds):
            uninstrument()
            bare_times.append(_best(bare, number))
            instrument(tracker, providers=["openai"])
            try:
                tracked_times.append(_best(tracked, number))
            finally:
                uninstrument()
        recorded = len(tracker.history())
    bare_us = min(bare_times)
    tracked_us = min(tracked_times)
    added = tracked_us - bare_us
    print(f"machine: {machine()}")
    print(
        f"openai {openai.__version__} chat.completions.create against MockLLMServer, best of {rounds}×{number}"
    )
    print(f"  bare SDK call      {bare_us:10.1f} µs")
    print(f"  instrumented call  {tracked_us:10.1f} µs   ({recorded} records)")
    print(f"  added              {added:10.1f} µs   ({added / bare_us * 100:+.2f} %)  goal: ≤ 2 % or ≤ 30 µs")
    return {
        "bare_us": bare_us,
        "instrumented_us": tracked_us,
        "added_us": added,
        "added_pct": added / bare_us * 100,
    }


if __name__ == "__main__":
    main()
