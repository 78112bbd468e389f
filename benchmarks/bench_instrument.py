"""Added latency of an instrumented OpenAI chat call vs the bare SDK call, against the local MockLLMServer
(run in its own process, as a real server is).

Both are measured in the same run, in alternated blocks of calls (same client settings; see `main`);
the difference is what `tokentrail.instrument()` adds (capture,
pricing, recording). Issue goal: ≤ 2 % or ≤ 30 µs.

The breakdown then times the parts of that added work on one real response, without the network: the
instrumentation wrapper around a method that returns the response at once (with a tracker that does
nothing, and with a real one), the provider adapter reading the usage, and `Tracker.record`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

import openai

from _timing import machine
from tokentrail.adapters import instrument, uninstrument
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

MESSAGES = [{"role": "user", "content": "How are tokens counted when a prompt is cached?"}]


def _serve(connection: Connection) -> None:
    """The mock server's own process: sends its OpenAI base URL, serves until told to stop."""
    with MockLLMServer() as server:
        connection.send(server.url("openai"))
        connection.recv()


@contextlib.contextmanager
def _server_process() -> Iterator[str]:
    """A MockLLMServer in a child process (its OpenAI base URL), as a real server is: in-process, its
    handler threads would compete with the client for the GIL right when the instrumentation runs."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(child,), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(timeout=5)


def _mean(fn: Callable[[], object], number: int) -> float:
    """Mean time of one `fn()` over `number` calls, in µs."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number * 1e6


def main(rounds: int = 60, number: int = 20) -> dict[str, float]:
    """Bare and instrumented blocks of `number` calls, alternated for `rounds` rounds (which one goes first
    alternates too). Two estimates of the added time: best block minus best block, and the median of the
    per-round differences (robust when other processes load the machine between rounds)."""
    with _server_process() as base_url:
        bare_client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
        tracked_client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)

        def bare() -> object:
            return bare_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        tracker = Tracker()

        def tracked() -> object:
            return tracked_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        def run_bare() -> float:
            uninstrument()
            return _mean(bare, number)

        def run_tracked() -> float:
            instrument(tracker, providers=["openai"])
            try:
                return _mean(tracked, number)
            finally:
                uninstrument()

        for _ in range(3):  # warm up connections, imports and caches
            run_bare()
            run_tracked()
        tracker.reset()
        bare_times: list[float] = []
        tracked_times: list[float] = []
        for i in range(rounds):
            if i % 2:
                tracked_times.append(run_tracked())
                bare_times.append(run_bare())
            else:
                bare_times.append(run_bare())
                tracked_times.append(run_tracked())
        recorded = len(tracker.history())
    bare_us = min(bare_times)
    tracked_us = min(tracked_times)
    added = tracked_us - bare_us
    paired = statistics.median(t - b for t, b in zip(tracked_times, bare_times, strict=True))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {machine()}; load average {load}")
    print(
        f"openai {openai.__version__} chat.completions.create against MockLLMServer (own process), "
        f"{rounds} alternated rounds of {number} calls"
    )
    print(f"  bare SDK call      {bare_us:10.1f} µs   (best block)")
    print(f"  instrumented call  {tracked_us:10.1f} µs   (best block; {recorded} records)")
    print(f"  added, best − best {added:10.1f} µs   ({added / bare_us * 100:+.2f} %)")
    print(f"  added, median of per-round differences {paired:.1f} µs   ({paired / bare_us * 100:+.2f} %)")
    print("  goal: ≤ 2 % or ≤ 30 µs")
    return {
        "bare_us": bare_us,
        "instrumented_us": tracked_us,
        "added_us": added,
        "added_pct": added / bare_us * 100,
        "added_median_us": paired,
    }


def paired(pairs: int = 4000) -> dict[str, float]:
    """The added latency call by call: a bare client and a `tt.wrap`-ped one (the same wrapper
    `instrument()` installs, without patching and unpatching between blocks) call in turns, the order
    alternating; the median of the per-pair differences, with a 95 % interval of that median from the
    order statistics. Pairing call by call cancels the drift that makes block timings on this VM swing
    by ±100 µs."""
    import math

    import tokentrail as tt

    with _server_process() as base_url:
        bare_client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
        tracked_client = tt.wrap(openai.OpenAI(base_url=base_url, api_key="test", max_retries=0), Tracker())

        def bare() -> object:
            return bare_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        def tracked() -> object:
            return tracked_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        for _ in range(200):
            bare()
            tracked()
        clock = time.perf_counter
        added: list[float] = []
        for i in range(pairs):
            if i % 2:
                start = clock()
                tracked()
                middle = clock()
                bare()
                added.append((middle - start) - (clock() - middle))
            else:
                start = clock()
                bare()
                middle = clock()
                tracked()
                added.append((clock() - middle) - (middle - start))
    added.sort()
    half = int(1.96 * math.sqrt(pairs) / 2)
    median = statistics.median(added) * 1e6
    low, high = added[pairs // 2 - half] * 1e6, added[pairs // 2 + half] * 1e6
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"paired, call by call ({pairs} pairs, tt.wrap): added {median:.1f} µs, 95 % interval {low:.1f} .. {high:.1f} µs"
    )
    print(f"  load average {load}; goal: ≤ 2 % or ≤ 30 µs")
    return {"paired_median_us": median, "paired_low_us": low, "paired_high_us": high}


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
    captured = openai_adapter.extract(response, "openai")
    usage, context = captured.usage, dict(captured.price_context)
    parts = {
        "wrapper + adapter (null tracker)": per_call_us(
            lambda: null_wrapped(resource, model="gpt-4o-mini", messages=MESSAGES), number=number
        ),
        "adapter: openai.extract": per_call_us(
            lambda: openai_adapter.extract(response, "openai"), number=number
        ),
        "Tracker.record (with service_tier)": per_call_us(
            lambda: tracker.record(usage, "gpt-4o-mini", provider="openai", duration_ms=1.0, context=context),
            number=number,
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
    paired()
    breakdown()
