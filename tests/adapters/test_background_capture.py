"""Background capture: instrumented calls are recorded by a worker thread, in call order, and every read
of the tracker sees them; `capture="sync"` records on the caller's thread; nothing is lost at exit."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai

import tokentrail as tt
from tokentrail.adapters import instrument, uninstrument
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker


def client(server: MockLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)


def chat(oai: openai.OpenAI, text: str = "hi") -> None:
    oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])


def in_threads(work: Callable[[int], None], count: int) -> None:
    """Run work(0) … work(count - 1) on threads of their own; return when all have ended."""
    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_the_worker_records_without_any_read(server: MockLLMServer) -> None:
    tracker = Tracker()
    seen: list[tuple[tt.Record, str]] = []
    tracker.add_sink(lambda record: seen.append((record, threading.current_thread().name)))
    instrument(tracker)
    try:
        server.queue(input=1000, output=100, route="openai.chat")
        chat(client(server))
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.001)  # no tracker read here: only the worker can deliver it
    finally:
        uninstrument()
    [(record, thread)] = seen
    assert thread != threading.current_thread().name
    assert record.usage.input_tokens == 1000 and record.cost is not None
    assert record.cost == Decimal("0.0035")  # gpt-4o $2.50 / $10 per M


def test_sync_capture_records_on_the_callers_thread(server: MockLLMServer) -> None:
    tracker = Tracker(capture="sync")
    threads: list[str] = []
    tracker.add_sink(lambda record: threads.append(threading.current_thread().name))
    instrument(tracker)
    try:
        server.queue(input=10, output=1, route="openai.chat")
        chat(client(server))
        assert threads == [threading.current_thread().name]  # before any read of the tracker
    finally:
        uninstrument()
    assert tracker.capture == "sync"


def test_eight_threads_exact_totals_and_each_threads_order(server: MockLLMServer) -> None:
    tracker = Tracker()
    instrument(tracker)
    per_thread = 40
    for _ in range(8 * per_thread):
        server.queue(input=100, output=10, route="openai.chat")
    oai = client(server)

    def work(n: int) -> None:
        with tt.scope(agent=f"a{n}"):
            for i in range(per_thread):
                with tt.scope(tool=f"{i:03d}"):
                    chat(oai)

    try:
        in_threads(work, 8)
    finally:
        uninstrument()
    totals = tracker.totals()
    assert totals.calls == 8 * per_thread
    assert totals.usage.input_tokens == 8 * per_thread * 100
    assert totals.cost == Decimal("0.00035") * 8 * per_thread
    history = tracker.history()
    for n in range(8):
        tools = [r.tool for r in history if r.agent == f"a{n}"]
        assert tools == [f"{i:03d}" for i in range(per_thread)]  # each thread's calls in call order


def test_pending_captures_reach_a_sqlite_ledger_at_exit(tmp_path: Path) -> None:
    ledger = tmp_path / "exit.db"
    script = f"""
import openai, tokentrail as tt
from tokentrail.testing.mock_llm import MockLLMServer
server = MockLLMServer().__enter__()
tracker = tt.Tracker(store="sqlite:///{ledger}")
tt.instrument(tracker)
oai = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)
for _ in range(25):
    server.queue(input=100, output=10, route="openai.chat")
    oai.chat.completions.create(model="gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
# exit without flush() or close(): the exit hook drains the captures into the ledger
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    reread = Tracker(store=f"sqlite:///{ledger}")
    totals = reread.totals()
    assert totals.calls == 25 and totals.usage.output_tokens == 250


def test_100_threads_race_an_instrumented_hard_limit() -> None:
    """Background capture with a budget: every call reserves its worst case before its request, is
    settled by the worker, and the race for the last cents leaves spend under the limit and exact."""
    with MockLLMServer() as server:  # its own: refused calls leave queued responses behind
        _race_an_instrumented_hard_limit(server)


def _race_an_instrumented_hard_limit(server: MockLLMServer) -> None:
    limit = Decimal("0.25")  # ≈ 50 worst cases of 500 output tokens on gpt-4o
    tracker = Tracker(budgets=[tt.Budget(limit_usd=limit, name="race")])
    rng = random.Random(7)
    for _ in range(
        100
    ):  # ≤ the reserved worst case; together ≈ $0.37, so calls are refused however they overlap
        server.queue(input=5, output=rng.randint(250, 500), route="openai.chat")
    oai = client(server)
    sent = len(server.requests)
    start = threading.Barrier(100)
    refused: list[int] = []
    errors: list[BaseException] = []

    def work(n: int) -> None:
        start.wait()
        try:
            with tt.scope(agent=f"a{n}"):
                oai.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=500
                )
        except tt.BudgetExceeded:
            refused.append(n)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    instrument(tracker)
    try:
        in_threads(work, 100)
    finally:
        uninstrument()
    assert errors == []
    totals = tracker.totals()
    assert totals.calls + len(refused) == 100 and len(server.requests) - sent == totals.calls
    assert 50 <= totals.calls < 100 and refused  # the limit bit, and not before ≈ 50 worst cases
    (status,) = tracker.budget_status()
    assert status.reserved_usd == 0, "a reservation leaked"
    assert status.spent_usd == totals.cost <= limit


def _calls_in_a_forked_child(tracker: Tracker, url: str, out: Any) -> None:
    oai = openai.OpenAI(base_url=url, api_key="test", max_retries=0)
    for _ in range(3):
        chat(oai, "child")
    out.send((tracker.totals().calls, threading.current_thread().name))


def test_a_forked_child_records_its_own_calls_and_none_of_the_parents_twice(server: MockLLMServer) -> None:
    import multiprocessing

    tracker = Tracker()
    instrument(tracker)
    try:
        oai = client(server)
        for _ in range(5):
            chat(oai)  # captured; maybe still pending when the fork happens (drained before it)
        receive, send = multiprocessing.Pipe(duplex=False)
        child = multiprocessing.get_context("fork").Process(
            target=_calls_in_a_forked_child, args=(tracker, server.url("openai"), send)
        )
        child.start()
        child_calls, _ = receive.recv()
        child.join(30)
        assert child.exitcode == 0
        chat(oai)
    finally:
        uninstrument()
    assert child_calls == 5 + 3  # the parent's calls recorded before the fork, then its own three
    assert tracker.totals().calls == 6  # the child's calls are the child's


def test_a_failing_sink_is_counted_and_the_worker_keeps_recording(server: MockLLMServer) -> None:
    tracker = Tracker()
    seen: list[str] = []

    def sink(record: tt.Record) -> None:
        if len(seen) < 2:
            seen.append("failed")
            raise ValueError("the sink is down")
        seen.append(threading.current_thread().name)

    tracker.add_sink(sink)
    instrument(tracker)
    try:
        oai = client(server)
        for _ in range(3):
            chat(oai)
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.001)  # no read: the worker delivers the third after two failures
    finally:
        uninstrument()
    assert seen[:2] == ["failed", "failed"] and seen[2] == "tokentrail-capture"
    assert tracker.error_counts.get("sink_errors") == 2
    assert tracker.totals().calls == 3  # failed sinks lose nothing: the store has every call
