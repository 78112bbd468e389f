"""Added latency of an instrumented OpenAI chat call vs the bare SDK call, against the local MockLLMServer.

Both are measured in the same run, interleaved round by round (bare, then instrumented, same client
settings), best-of-N per-call time; the difference is what `tokentrail.instrument()` adds (capture,
pricing, recording). Issue goal: ≤ 2 % or ≤ 30 µs.

The breakdown then times the parts of that added work on one real response, without the network: the
instrumentation wrapper around a method that returns the response at once (with a tracker that does
nothing, and with a real one), the provider adapter reading the usage, and `Tracker.record`.
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


def breakdown(number: int = 5000) -> dict[str, float]:
    """Where the added time goes, per call in µs, measured on one real ChatCompletion."""
    from _timing import per_call_us
    from tokentrail.adapters import openai as openai_adapter
    from tokentrail.adapters._instrument import _make_wrapper, _Settings
    from tokentrail.adapters._instrument_openai import TARGETS

    with MockLLMServer() as server:
        client = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
        response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    resource = client.chat.completions

    def answer(self: object, **kwargs: object) -> object:
        return response

    class NullTracker:
        budgets = None

        def record(self, *args: object, **kwargs: object) -> None:
            return None

    null_wrapped = _make_wrapper(answer, TARGETS[0], _Settings(NullTracker()))
    tracker = Tracker()
    wrapped = _make_wrapper(answer, TARGETS[0], _Settings(tracker))
    usage = openai_adapter.extract(response, "openai").usage
    parts = {
        "wrapper + adapter (null tracker)": per_call_us(
            lambda: null_wrapped(resource, model="gpt-4o-mini", messages=MESSAGES), number=number
        ),
        "adapter: openai.extract": per_call_us(
            lambda: openai_adapter.extract(response, "openai"), number=number
        ),
        "Tracker.record": per_call_us(
            lambda: tracker.record(usage, "gpt-4o-mini", provider="openai", duration_ms=1.0), number=number
        ),
        "wrapper + adapter + record": per_call_us(
            lambda: wrapped(resource, model="gpt-4o-mini", messages=MESSAGES), number=number
        ),
    }
    print("breakdown of the added work (no network), per call:")
    for name, micros in parts.items():
        print(f"  {name:34s} {micros:8.1f} µs")
    return parts


if __name__ == "__main__":
    main()
    breakdown()
