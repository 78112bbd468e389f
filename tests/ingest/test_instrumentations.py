"""Real GenAI instrumentations around real openai SDK calls against the mock LLM server, exported by
the real OTLP/HTTP exporter to the endpoint: calls made (at the mock) == records, tokens equal to what
the SDK reported, agent/session as the spans say — and, with `tt.instrument()` in the same process,
each call recorded once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import tokentrail as tt
from tests.ingest.conftest import Served, serve
from tokentrail.ingest.app import collector_app
from tokentrail.testing.mock_llm import MockLLMServer


@pytest.fixture
def mock() -> Iterator[MockLLMServer]:
    with MockLLMServer() as server:
        yield server


@pytest.fixture
def endpoint() -> Iterator[tuple[tt.Tracker, Any, Served]]:
    tracker = tt.Tracker()
    app = collector_app(tracker)
    with serve(app) as served:
        yield tracker, app, served


def _provider(served: Served) -> TracerProvider:
    """The SDK's default pipeline: a batch processor (the agent span ends after its calls; one batch
    carries the trace, so the endpoint sees the ancestors it attributes the calls with)."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{served.url}/v1/traces")))
    return provider


def _calls(client: openai.OpenAI, provider: TracerProvider) -> list[tuple[int, int]]:
    """Three chat calls (one streamed) inside an agent span; the usage the SDK reported for each."""
    tracer = provider.get_tracer("app")
    seen: list[tuple[int, int]] = []
    with tracer.start_as_current_span("invoke_agent researcher") as agent:
        agent.set_attribute("gen_ai.operation.name", "invoke_agent")
        agent.set_attribute("gen_ai.agent.name", "researcher")
        agent.set_attribute("gen_ai.conversation.id", "conv-7")
        agent.set_attribute("session.id", "conv-7")
        agent.set_attribute("agent.name", "researcher")
        for prompt in ("hello", "tell me more about tokens"):
            response = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
            )
            assert response.usage is not None
            seen.append((response.usage.prompt_tokens, response.usage.completion_tokens))
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "stream it"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = None
        for chunk in stream:
            usage = chunk.usage or usage
        assert usage is not None
        seen.append((usage.prompt_tokens, usage.completion_tokens))
    provider.force_flush()
    return seen


def _chat_requests(mock: MockLLMServer) -> int:
    return sum(1 for r in mock.requests if r["path"].endswith("/chat/completions"))


def _instrumentor(name: str) -> Any:
    if name == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        return OpenAIInstrumentor()
    from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceInstrumentor

    return OpenInferenceInstrumentor()


@pytest.mark.parametrize("name", ["openai-v2", "openinference"])
def test_genai_instrumentations(
    name: str, mock: MockLLMServer, endpoint: tuple[tt.Tracker, Any, Served]
) -> None:
    """opentelemetry-instrumentation-openai-v2 (GenAI semconv) and openinference-instrumentation-openai."""
    tracker, app, served = endpoint
    provider = _provider(served)
    instrumentor = _instrumentor(name)
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = openai.OpenAI(base_url=mock.url("openai"), api_key="sk-test")
        reported = _calls(client, provider)
    finally:
        instrumentor.uninstrument()
        for cls in (openai.OpenAI, openai.AsyncOpenAI):
            # openinference's uninstrument() leaves the base class's method set on the subclass, which
            # would hide a later tt.instrument() patch of the base class from OpenAI clients: put it back
            if cls.__dict__.get("request") is cls.__mro__[1].__dict__.get("request"):
                delattr(cls, "request")
    records = sorted(tracker.history(), key=lambda r: r.timestamp_us)
    assert len(records) == _chat_requests(mock) == 3
    assert [(r.usage.input_tokens, r.usage.output_tokens) for r in records] == reported
    assert {(r.agent, r.session, r.provider) for r in records} == {("researcher", "conv-7", "openai")}
    assert all(r.model and r.model.startswith("gpt-4o-mini") and r.priced for r in records)
    assert app.traces.ingestor.totals.in_process == 0


def test_in_process_and_otel_in_one_process_count_each_call_once(
    mock: MockLLMServer, endpoint: tuple[tt.Tracker, Any, Served]
) -> None:
    """The process runs tt.instrument() and an OTel GenAI instrumentation exporting to the endpoint
    that writes the same ledger: tokentrail marks the instrumentation's span, the endpoint skips it."""
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    tracker, app, served = endpoint
    provider = _provider(served)
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    tt.instrument(tracker, providers=["openai"])
    try:
        client = openai.OpenAI(base_url=mock.url("openai"), api_key="sk-test")
        with tt.scope(agent="researcher"):
            reported = _calls(client, provider)
    finally:
        tt.uninstrument()
        instrumentor.uninstrument()
    records = tracker.history()
    assert len(records) == _chat_requests(mock) == 3
    assert sorted((r.usage.input_tokens, r.usage.output_tokens) for r in records) == sorted(reported)
    assert all(TAG not in r.tags for r in records), ([r.tags for r in records], app.traces.ingestor.totals)
    assert app.traces.ingestor.totals.in_process == 3


TAG = "otlp"


@pytest.mark.parametrize("first", ["openinference", "tokentrail"])
def test_openinference_and_tokentrail_in_either_order_count_each_call_once(
    first: str, mock: MockLLMServer, endpoint: tuple[tt.Tracker, Any, Served]
) -> None:
    """openinference-instrumentation-openai wraps `OpenAI.request` (the subclass), tokentrail
    `SyncAPIClient.request` (the base class). Instrumented first, OpenInference captures the unpatched base
    method: tokentrail never sees the calls, the spans are recorded. tokentrail first: OpenInference wraps
    tokentrail's method, its span is current when tokentrail records, so tokentrail marks it and the
    endpoint skips it. Either way each call is recorded once (docs/concepts.md, "Exactly once")."""
    from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceInstrumentor

    tracker, app, served = endpoint
    provider = _provider(served)
    instrumentor = OpenInferenceInstrumentor()
    steps = [
        lambda: instrumentor.instrument(tracer_provider=provider),
        lambda: tt.instrument(tracker, providers=["openai"]),
    ]
    for step in steps if first == "openinference" else steps[::-1]:
        step()
    try:
        client = openai.OpenAI(base_url=mock.url("openai"), api_key="sk-test")
        reported = _calls(client, provider)
    finally:
        tt.uninstrument()
        instrumentor.uninstrument()
        for cls in (openai.OpenAI, openai.AsyncOpenAI):
            if "request" in cls.__dict__:
                delattr(cls, "request")
    tracker.flush()
    records = tracker.history()
    assert len(records) == _chat_requests(mock) == 3
    assert sorted((r.usage.input_tokens, r.usage.output_tokens) for r in records) == sorted(reported)
    from_spans = sum(1 for r in records if TAG in r.tags)
    totals = app.traces.ingestor.totals
    if first == "openinference":
        assert (from_spans, totals.in_process) == (3, 0), totals
    else:
        # the streamed call reaches OpenInference as tokentrail's stream proxy, which it does not read
        # usage from: that span carries none (counted under no_usage, beside the agent span)
        assert (from_spans, totals.in_process, totals.no_usage) == (0, 2, 2), totals
