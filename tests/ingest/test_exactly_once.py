"""Duplicates the ledger alone cannot see: the same spans recorded at the same moment by two collectors
(threads over two store connections; two real `tokentrail collect` processes over one Postgres ledger)
are written once and reach the budgets and metrics once — the store's `append_new` says which records
it inserted. A span without times is refused, and the exporter told so (OTLP partial success)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail as tt
from tests.conftest import wait_for
from tests.ingest.conftest import serve
from tests.ingest.otlp_json import chat, export, span
from tokentrail.ingest.app import UNTIMED_REASON, collector_app
from tokentrail.ingest.otlp import decode_json
from tokentrail.ingest.records import Ingestor

ROUNDS, CALLS = 8, 40


def _finished(rounds: int, calls: int) -> list[list[ReadableSpan]]:
    """`rounds` exports, each `calls` agent runs of one chat span (agent span in the same export)."""
    out = []
    for r in range(rounds):
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("agents")
        for n in range(calls):
            with tracer.start_as_current_span("invoke_agent writer") as agent:
                agent.set_attribute("gen_ai.operation.name", "invoke_agent")
                agent.set_attribute("gen_ai.agent.name", "writer")
                with tracer.start_as_current_span("chat gpt-4o-mini") as call:
                    for key, value in chat(100 * r + n + 1, 1).items():
                        call.set_attribute(key, value)
        out.append(list(memory.get_finished_spans()))
    return out


def _race(ingestors: list[Ingestor], exports: list[list[Any]]) -> None:
    """Each export handed to every ingestor at the same moment (threads released by one barrier)."""
    barrier = threading.Barrier(len(ingestors))
    errors: list[BaseException] = []

    def run(ingestor: Ingestor) -> None:
        try:
            for spans in exports:
                barrier.wait()
                ingestor.ingest(spans)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(ingestor,)) for ingestor in ingestors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def _spans_of(finished: list[list[ReadableSpan]]) -> list[list[Any]]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from tokentrail.ingest.otlp import decode_protobuf

    return [decode_protobuf(encode_spans(spans).SerializeToString()) for spans in finished]


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url = request.getfixturevalue("postgres_server")
    schema = f"tt_ingest_{uuid.uuid4().hex[:12]}"
    yield f"{url}?schema={schema}&spool={tmp_path / 'spool'}"
    from tokentrail.stores.postgres import PostgresStore

    store = PostgresStore(url, schema=schema, spool=tmp_path / "spool")
    store.drop_schema()
    store.close()


def test_two_collectors_recording_the_same_spans_charge_them_once(store_url: str) -> None:
    seen: list[list[tt.Record]] = [[], []]
    budgets = [tt.Budget(limit_tokens=10**12, window="rolling:1d") for _ in seen]
    trackers = [
        tt.Tracker(store_url, sinks=[s.append], budgets=[b]) for s, b in zip(seen, budgets, strict=True)
    ]
    ingestors = [Ingestor(tracker) for tracker in trackers]
    exports = _spans_of(_finished(ROUNDS, CALLS))
    _race(ingestors, exports)
    _race(ingestors, exports)  # and again: each remembers only its own, the store knows both
    calls = ROUNDS * CALLS
    assert len(seen[0]) + len(seen[1]) == calls  # sinks (metrics) saw each call once, across both
    spent = sum(tracker.budget_status()[0].spent_tokens for tracker in trackers)
    assert spent == sum(r.usage.total_tokens for r in seen[0] + seen[1])  # budgets charged once too
    recorded = sum(i.totals.recorded for i in ingestors)
    duplicates = sum(i.totals.duplicates for i in ingestors)
    assert (recorded, duplicates) == (calls, 3 * calls)
    assert {r.id for r in seen[0]}.isdisjoint(r.id for r in seen[1])
    totals = trackers[0].totals()
    assert (totals.calls, totals.input_tokens) == (
        calls,
        sum(100 * r + n + 1 for r in range(ROUNDS) for n in range(CALLS)),
    )
    for tracker in trackers:
        tracker.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_collect_processes_racing_one_postgres_ledger(postgres_server: str, tmp_path: Path) -> None:
    schema = f"tt_ingest_{uuid.uuid4().hex[:12]}"
    url = f"{postgres_server}?schema={schema}&spool={tmp_path / 'spool'}"
    collectors = []
    for n in range(2):
        port = _free_port()
        command = [sys.executable, "-m", "tokentrail.cli", "collect", "--store", url, "--port", str(port)]
        command += ["--journal", str(tmp_path / f"held-{n}.jsonl")]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ}
        )
        collectors.append((process, f"http://127.0.0.1:{port}"))
    try:
        for process, base in collectors:
            assert wait_for(lambda base=base: _healthy(base), 60), process.poll()
        exporters = [OTLPSpanExporter(endpoint=f"{base}/v1/traces") for _, base in collectors]
        finished = _finished(ROUNDS, CALLS)
        barrier = threading.Barrier(2)
        results: list[list[SpanExportResult]] = [[], []]

        def run(n: int) -> None:
            for spans in finished:
                barrier.wait(60)
                results[n].append(exporters[n].export(spans))

        threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [[SpanExportResult.SUCCESS] * ROUNDS] * 2
    finally:
        outputs = []
        for process, _ in collectors:
            process.send_signal(signal.SIGINT)
            outputs.append(process.communicate(timeout=60)[0])
    totals = [_totals(output) for output in outputs]
    calls = ROUNDS * CALLS
    assert sum(t["recorded"] for t in totals) == calls, outputs  # what each handed its budgets and metrics
    assert sum(t["duplicates"] for t in totals) == calls
    from tokentrail.stores.postgres import PostgresStore

    store = PostgresStore(postgres_server, schema=schema, spool=tmp_path / "spool")
    try:
        tracker = tt.Tracker(store)
        assert (tracker.totals().calls, len(tracker.history())) == (calls, calls)
        assert {r.agent for r in tracker.history()} == {"writer"}
    finally:
        store.drop_schema()
        store.close()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _totals(output: str) -> dict[str, int]:
    import ast

    line = next(line for line in output.splitlines() if line.startswith("spans: "))
    return dict(ast.literal_eval(line.removeprefix("spans: ")))


def test_a_span_without_times_is_refused_with_a_partial_success() -> None:
    tracker = tt.Tracker()
    body = export(span(1, chat(5, 1), end_ns=0, duration_ms=0), span(2, chat(7, 1)))
    assert Ingestor(tracker).ingest(decode_json(body)).untimed == 1
    app = collector_app(tt.Tracker())
    with serve(app) as served:
        answer = httpx.post(
            f"{served.url}/v1/traces", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 200
        assert answer.json() == {
            "partialSuccess": {"rejectedSpans": "1", "errorMessage": UNTIMED_REASON.format(count=1)}
        }
        proto = _proto(body)
        answer = httpx.post(
            f"{served.url}/v1/traces", content=proto, headers={"content-type": "application/x-protobuf"}
        )
        partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
        assert (partial.rejected_spans, partial.error_message) == (1, UNTIMED_REASON.format(count=1))
    assert [r.usage.input_tokens for r in app.traces.ingestor.tracker.history()] == [7]


def _proto(body: bytes) -> bytes:
    """The same export as protobuf (google.protobuf.json_format reads OTLP/JSON but for the hex ids)."""
    import base64
    import json

    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = json.loads(body)
    for resource in request["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for one in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    one[key] = base64.b64encode(bytes.fromhex(one[key])).decode()
    return json_format.ParseDict(request, ExportTraceServiceRequest()).SerializeToString()
