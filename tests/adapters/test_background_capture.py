"""Background capture: instrumented calls are recorded by a worker thread, in call order, and every read
of the tracker sees them; `capture="sync"` records on the caller's thread; nothing is lost at exit."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import openai

import tokentrail as tt
from tokentrail.adapters import instrument, uninstrument
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker


def client(server: MockLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)


def chat(oai: openai.OpenAI, text: str = "hi") -> None:
    oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])


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
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
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
