"""The gateway also takes OTLP/HTTP trace exports (`POST /v1/traces`): spans from any language land in
the same ledger as the calls it forwards, behind the gateway token when it has one."""

from __future__ import annotations

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail as tt
from tests.gateway.conftest import gateway_config, serve
from tests.ingest.otlp_json import chat
from tokentrail.gateway import Gateway
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
