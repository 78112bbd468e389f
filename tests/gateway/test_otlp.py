"""The gateway also takes OTLP/HTTP trace exports (`POST /v1/traces`): spans from any language land in
the same ledger as the calls it forwards, behind the gateway token when it has one."""

from __future__ import annotations

from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

import tokentrail as tt
from tests.gateway.conftest import gateway_config, serve
from tests.gateway.test_processes import TOKEN as PROCESS_TOKEN
from tests.gateway.test_processes import GatewayProcess, records_in
from tests.ingest.otlp_json import chat, export, span
from tokentrail.cli import app
from tokentrail.gateway import Gateway
from tokentrail.ingest.held import default_journal
from tokentrail.ingest.records import Ingestor
from tokentrail.testing.mock_llm import MockLLMServer

TOKEN = "gateway-token-0123456789"


def _agent_runs(count: int) -> InMemorySpanExporter:
    """`count` agent runs made by the real OTel SDK, each an invoke_agent span around one chat span."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("agents")
    for n in range(count):
        with tracer.start_as_current_span("invoke_agent planner") as agent:
            agent.set_attribute("gen_ai.operation.name", "invoke_agent")
            agent.set_attribute("gen_ai.agent.name", "planner")
            agent.set_attribute("gen_ai.conversation.id", "run-7")
            with tracer.start_as_current_span("chat gpt-4o-mini") as call:
                for key, value in chat(200 + n, 20 + n).items():
                    call.set_attribute(key, value)
    return memory


def test_spans_and_forwarded_calls_share_one_ledger(mock: MockLLMServer, ledger: str) -> None:
    with serve(Gateway(gateway_config(mock.base, ledger))) as running:
        exporter = OTLPSpanExporter(endpoint=f"{running.url}/v1/traces")
        spans = _agent_runs(3).get_finished_spans()
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert exporter.export(spans) is SpanExportResult.SUCCESS  # a retried export: nothing twice
        exporter.shutdown()
        answer = httpx.post(
            f"{running.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": "Bearer sk-client", "x-tokentrail-agent": "caller"},
        )
        assert answer.status_code == 200
    reader = tt.Tracker(ledger)
    records = reader.history()
    reader.close()
    from_spans = sorted((r for r in records if r.agent == "planner"), key=lambda r: r.usage.input_tokens)
    assert [(r.usage.input_tokens, r.usage.output_tokens) for r in from_spans] == [
        (200, 20),
        (201, 21),
        (202, 22),
    ]
    assert {r.session for r in from_spans} == {"run-7"}
    assert all(r.priced and r.cost > 0 for r in from_spans)
    forwarded = [r for r in records if r.agent == "caller"]
    assert len(forwarded) == 1 and len(mock.requests) == 1
    assert forwarded[0].usage.input_tokens == answer.json()["usage"]["prompt_tokens"]


def test_with_a_token_exports_need_it(mock: MockLLMServer, ledger: str) -> None:
    gateway = Gateway(gateway_config(mock.base, ledger, token=TOKEN))
    with serve(gateway) as running:
        spans = _agent_runs(1).get_finished_spans()
        anonymous = OTLPSpanExporter(endpoint=f"{running.url}/v1/traces")
        assert anonymous.export(spans) is SpanExportResult.FAILURE
        wrong = httpx.post(f"{running.url}/v1/traces", content=b"{}", headers={"x-tokentrail-token": "nope"})
        assert wrong.status_code == 401
        assert gateway.tracker.totals().calls == 0
        by_header = OTLPSpanExporter(
            endpoint=f"{running.url}/v1/traces", headers={"x-tokentrail-token": TOKEN}
        )
        assert by_header.export(spans) is SpanExportResult.SUCCESS
        bearer = OTLPSpanExporter(
            endpoint=f"{running.url}/v1/traces", headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert bearer.export(_agent_runs(1).get_finished_spans()) is SpanExportResult.SUCCESS
    reader = tt.Tracker(ledger)
    assert reader.totals().calls == 2
    reader.close()


def test_a_span_held_by_a_killed_gateway_is_recorded_once_after_a_restart(
    mock: MockLLMServer, tmp_path: Path
) -> None:
    """A call span whose agent span has not arrived is journaled beside the SQLite ledger before the
    exporter is answered; the gateway is SIGKILLed, restarted on the same port (the same default
    journal), sent the exporter's retry and then the agent span: one record, with the agent."""
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    options = ("--upstream", f"openai={mock.base}", "--store", ledger)
    headers = {"content-type": "application/json", "x-tokentrail-token": PROCESS_TOKEN}
    call = export(span(2, chat(70, 7), parent=1))
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "scout"}

    first = GatewayProcess(*options)
    try:
        held = httpx.post(first.url + "/v1/traces", content=call, headers=headers)
    finally:
        first.kill()
    journal = Path(default_journal(ledger, first.port))
    journaled = journal.read_text()
    recorded_before = records_in(ledger)
    second = GatewayProcess(*options, port=first.port)
    try:
        retried = httpx.post(second.url + "/v1/traces", content=call, headers=headers)
        parent = export(span(1, agent, name="invoke_agent scout"))
        released = httpx.post(second.url + "/v1/traces", content=parent, headers=headers)
    finally:
        second.stop()
    records = records_in(ledger)

    assert journal == tmp_path / f"ledger.db.otlp-held-{first.port}.jsonl"
    assert (held.status_code, retried.status_code, released.status_code) == (200, 200, 200)
    assert "held=1" in held.headers["x-tokentrail-ingest"]
    assert "0000000000000002" in journaled  # on disk before the exporter was answered
    assert recorded_before == []
    assert "recorded=0" in retried.headers["x-tokentrail-ingest"]
    assert "recorded=1" in released.headers["x-tokentrail-ingest"]
    assert [(r.agent, r.usage.input_tokens, r.usage.output_tokens) for r in records] == [("scout", 70, 7)]


def test_a_restarted_gateway_reads_its_journal_at_start_up(mock: MockLLMServer, tmp_path: Path) -> None:
    """No export after the restart: the spans the journal lists are held again at start-up, and recorded
    (with what is known) when their deadline passes or, here, at shutdown."""
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    options = (
        "--upstream",
        f"openai={mock.base}",
        "--store",
        ledger,
        "--journal",
        str(tmp_path / "held.jsonl"),
    )
    headers = {"content-type": "application/json", "x-tokentrail-token": PROCESS_TOKEN}
    first = GatewayProcess(*options)
    try:
        httpx.post(first.url + "/v1/traces", content=export(span(2, chat(70, 7), parent=1)), headers=headers)
    finally:
        first.kill()
    GatewayProcess(*options).stop()
    records = records_in(ledger)

    assert [(r.agent, r.session, r.usage.input_tokens) for r in records] == [(None, f"{1:032x}", 70)]


def test_a_journal_another_process_holds_stops_the_gateway_at_start_up(
    mock: MockLLMServer, tmp_path: Path
) -> None:
    journal = tmp_path / "held.jsonl"
    holder = Ingestor(tt.Tracker(), journal=journal)  # holds the journal's lock
    try:
        result = CliRunner().invoke(
            app,
            [
                "gateway",
                "--upstream",
                f"openai={mock.base}",
                "--store",
                "memory://",
                "--journal",
                str(journal),
            ],
        )
    finally:
        holder.close()

    assert result.exit_code == 1
    assert "Cannot open the journal of held spans" in result.stdout
