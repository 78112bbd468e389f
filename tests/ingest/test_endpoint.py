"""`POST /v1/traces` over real HTTP: the real Python OTLP/HTTP exporter (protobuf, gzip or not) into
`tokentrail collect`'s app and into `tokentrail serve`'s; OTLP/JSON; refusals that record nothing;
the token beyond loopback."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail as tt
from tests.ingest.conftest import serve
from tests.ingest.otlp_json import chat, export, span
from tokentrail.ingest.app import collector_app
from tokentrail.server._app import create_app
from tokentrail.server._bind import BindRefused, check_bind


def _spans(count: int) -> InMemorySpanExporter:
    """`count` agent runs, each an invoke_agent span around one chat span, made by the real SDK."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("agents")
    for n in range(count):
        with tracer.start_as_current_span("invoke_agent writer") as agent:
            agent.set_attribute("gen_ai.operation.name", "invoke_agent")
            agent.set_attribute("gen_ai.agent.name", "writer")
            agent.set_attribute("gen_ai.conversation.id", f"conv-{n % 2}")
            with tracer.start_as_current_span("chat gpt-4o-mini") as call:
                for key, value in chat(100 + n, 10 + n).items():
                    call.set_attribute(key, value)
    return memory


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_real_exporter_into_collect(compression: Compression) -> None:
    tracker = tt.Tracker()
    app = collector_app(tracker)
    finished = _spans(5).get_finished_spans()
    with serve(app) as served:
        exporter = OTLPSpanExporter(endpoint=f"{served.url}/v1/traces", compression=compression)
        assert exporter.export(finished) is SpanExportResult.SUCCESS
        assert exporter.export(finished) is SpanExportResult.SUCCESS  # a retry: nothing twice
        exporter.shutdown()
    records = sorted(tracker.history(), key=lambda r: r.usage.input_tokens)
    assert [r.usage.input_tokens for r in records] == [100, 101, 102, 103, 104]
    assert [r.usage.output_tokens for r in records] == [10, 11, 12, 13, 14]
    assert {r.agent for r in records} == {"writer"}
    assert [r.session for r in records] == ["conv-0", "conv-1", "conv-0", "conv-1", "conv-0"]
    totals = app.traces.ingestor.totals
    assert (totals.recorded, totals.duplicates, totals.no_usage) == (5, 5, 10)  # agent spans: no usage


def test_json_gzip_and_refusals_record_nothing(tmp_path: Path) -> None:
    tracker = tt.Tracker()
    app = collector_app(tracker, max_bytes=64 * 1024)
    good = export(span(1, chat()))
    with serve(app) as served, httpx.Client(base_url=served.url) as client:
        refused = [
            client.post("/v1/traces", content=b"{oops", headers={"content-type": "application/json"}),
            client.post(
                "/v1/traces", content=b"\x0a\xff", headers={"content-type": "application/x-protobuf"}
            ),
            client.post("/v1/traces", content=good, headers={"content-type": "text/plain"}),
            client.post("/v1/traces", content=b"x" * 70_000, headers={"content-type": "application/json"}),
            client.post(
                "/v1/traces",
                content=gzip.compress(b" " * 200_000),
                headers={"content-type": "application/json", "content-encoding": "gzip"},
            ),
            client.get("/v1/traces"),
            client.post("/v1/other", content=good, headers={"content-type": "application/json"}),
        ]
        assert [r.status_code for r in refused] == [400, 400, 415, 413, 413, 405, 404]
        assert "not JSON" in refused[0].json()["message"]
        assert b"not an OTLP ExportTraceServiceRequest" in refused[1].content  # a google.rpc.Status
        assert tracker.totals().calls == 0
        ok = client.post(
            "/v1/traces",
            content=gzip.compress(good),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert (ok.status_code, ok.json()) == (200, {})
        assert "recorded=1" in ok.headers["x-tokentrail-ingest"]
        assert client.get("/healthz").status_code == 200
    assert tracker.totals().calls == 1


def test_the_token_guards_the_endpoint_and_exposure_needs_one() -> None:
    tracker = tt.Tracker()
    with pytest.raises(BindRefused):
        check_bind("0.0.0.0", None)  # what `tokentrail collect` / `serve` check before listening
    with serve(collector_app(tracker, token="s3cret")) as served:
        body = export(span(1, chat()))
        headers = {"content-type": "application/json"}
        assert httpx.post(f"{served.url}/v1/traces", content=body, headers=headers).status_code == 401
        assert tracker.totals().calls == 0
        exporter = OTLPSpanExporter(
            endpoint=f"{served.url}/v1/traces", headers={"authorization": "Bearer s3cret"}
        )
        assert exporter.export(_spans(1).get_finished_spans()) is SpanExportResult.SUCCESS
    assert tracker.totals().calls == 1


def test_tokentrail_serve_mounts_the_endpoint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = tt.Tracker(url)  # creates the ledger; the dashboard opens it read-only
    writer.close()
    from tokentrail.server._readonly import open_read_only

    dashboard = tt.Tracker(store=open_read_only(url))
    app = create_app(dashboard, token="t0k", ingest=url)
    with serve(app) as served:
        exporter = OTLPSpanExporter(
            endpoint=f"{served.url}/v1/traces", headers={"authorization": "Bearer t0k"}
        )
        assert exporter.export(_spans(2).get_finished_spans()) is SpanExportResult.SUCCESS
        unauthorized = OTLPSpanExporter(endpoint=f"{served.url}/v1/traces")
        assert unauthorized.export(_spans(1).get_finished_spans()) is SpanExportResult.FAILURE
        summary = httpx.get(f"{served.url}/api/summary", headers={"authorization": "Bearer t0k"})
        assert summary.status_code == 200
    reader = tt.Tracker(url)
    assert (reader.totals().calls, reader.totals().input_tokens) == (2, 201)
    reader.close()


def test_the_journal_of_a_server_ledger_goes_to_its_spool_directory(tmp_path: Path) -> None:
    """Beside a postgresql:// ledger the journal lives in the store's spool directory: the URL's `spool=`
    when it names one (the same directory the store spools to), else the default spool directory."""
    from tokentrail.ingest.held import default_journal
    from tokentrail.stores._spool import default_spool_dir

    base = "postgresql://postgres@127.0.0.1:5432/test?schema=s1"
    named = Path(default_journal(f"{base}&spool={tmp_path / 'spool'}", 4318))
    default = Path(default_journal(base, 4318))
    assert named.parent == tmp_path / "spool" and named.name.endswith("-4318.jsonl")
    assert default.parent == default_spool_dir()
    assert named.name != default.name  # one journal per store URL


def test_tokentrail_serve_journals_the_spans_it_holds(tmp_path: Path) -> None:
    """`tokentrail serve` keeps a call span waiting for its agent span in a journal file beside the
    ledger (`default_journal`), so a crash does not lose it; the agent span's export releases it."""
    from tokentrail.ingest.held import default_journal

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    journal = default_journal(url, 8000)
    assert journal == f"{tmp_path / 'ledger.db'}.otlp-held-8000.jsonl"
    tt.Tracker(url).close()
    app = create_app(url, ingest=url, ingest_options={"journal": journal})
    headers = {"content-type": "application/json"}
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "scout"}
    with serve(app) as served:
        child = export(span(2, chat(70, 7), parent=1))
        assert httpx.post(f"{served.url}/v1/traces", content=child, headers=headers).status_code == 200
        assert "0000000000000002" in Path(journal).read_text()  # held, and on disk before the 200
        parent = export(span(1, agent, name="invoke_agent scout"))
        assert httpx.post(f"{served.url}/v1/traces", content=parent, headers=headers).status_code == 200
    reader = tt.Tracker(url)
    [record] = reader.history()
    reader.close()
    assert (record.agent, record.usage.input_tokens, record.usage.output_tokens) == ("scout", 70, 7)
