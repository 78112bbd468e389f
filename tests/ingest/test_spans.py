"""The span reader: each convention's attributes → Usage, model, provider; aggregates refused; bad counts
unknown with the reason; attribution from the span or its ancestors.

Attribute sets follow what the emitters write:
- GenAI: opentelemetry-instrumentation-openai-v2 2.4b0 (a chat span: gen_ai.operation.name "chat",
  gen_ai.request.model, gen_ai.response.model, gen_ai.response.id, gen_ai.usage.input_tokens/output_tokens,
  gen_ai.provider.name), plus the cache/reasoning names of the GenAI registry
  (opentelemetry-semantic-conventions 0.66b2, gen_ai_attributes.py).
- OpenInference: openinference-semantic-conventions 0.1.42 (llm.token_count.*, llm.model_name, llm.provider).
- Vercel AI SDK: ai 6.0.333, dist/index.mjs, the ai.generateText.doGenerate span's attributes.
"""

from __future__ import annotations

import pytest

from tokentrail import Usage
from tokentrail._types import UsageStatus
from tokentrail.ingest.spans import NotACall, SpanData, attribute, read_span

OPENAI_V2_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.id": "chatcmpl-123",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 1024,
    "gen_ai.usage.reasoning.output_tokens": 100,
}

VERCEL_DO_GENERATE = {
    "operation.name": "ai.generateText.doGenerate researcher",
    "ai.operationId": "ai.generateText.doGenerate",
    "ai.telemetry.functionId": "researcher",
    "ai.telemetry.metadata.sessionId": "s-42",
    "ai.model.provider": "openai.chat",
    "ai.model.id": "gpt-4o-mini",
    "ai.response.model": "gpt-4o-mini-2024-07-18",
    "ai.response.id": "chatcmpl-9",
    "ai.usage.inputTokens": 500,
    "ai.usage.inputTokenDetails.noCacheTokens": 100,
    "ai.usage.inputTokenDetails.cacheReadTokens": 400,
    "ai.usage.outputTokens": 50,
    "ai.usage.outputTokenDetails.textTokens": 30,
    "ai.usage.outputTokenDetails.reasoningTokens": 20,
    "ai.usage.reasoningTokens": 20,
    "ai.usage.cachedInputTokens": 400,
    "ai.usage.totalTokens": 550,
    "gen_ai.system": "openai.chat",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 500,
    "gen_ai.usage.output_tokens": 50,
}

OPENINFERENCE_LLM = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "claude-3-5-sonnet-20241022",
    "llm.provider": "anthropic",
    "llm.system": "anthropic",
    "llm.token_count.prompt": 2000,
    "llm.token_count.completion": 120,
    "llm.token_count.total": 2120,
    "llm.token_count.prompt_details.cache_read": 1500,
    "llm.token_count.prompt_details.cache_write": 400,
    "session.id": "conv-1",
    "user.id": "u-7",
}


def test_genai_semconv_maps_one_to_one() -> None:
    call = read_span(OPENAI_V2_CHAT)
    assert call is not None
    assert call.convention == "genai"
    assert call.usage == Usage(1200, 300, cache_read_tokens=1024, reasoning_tokens=100)
    assert (call.model, call.provider, call.response_id) == (
        "gpt-4o-mini-2024-07-18",
        "openai",
        "chatcmpl-123",
    )


def test_genai_older_names_and_system() -> None:
    old = {
        "gen_ai.system": "gcp.gemini",
        "gen_ai.request.model": "gemini-2.0-flash",
        "gen_ai.usage.prompt_tokens": 10,
        "gen_ai.usage.completion_tokens": 4,
        "gen_ai.usage.cache_creation.input_tokens": 6,
    }
    call = read_span(old)
    assert call is not None
    assert call.usage == Usage(10, 4, cache_write_tokens=6)
    assert (call.model, call.provider) == ("gemini-2.0-flash", "google")


def test_vercel_reads_its_own_names_not_the_genai_copy_too() -> None:
    call = read_span(VERCEL_DO_GENERATE)
    assert call is not None
    assert call.convention == "vercel"
    assert call.usage == Usage(500, 50, cache_read_tokens=400, reasoning_tokens=20)
    assert (call.model, call.provider, call.response_id) == ("gpt-4o-mini-2024-07-18", "openai", "chatcmpl-9")


def test_vercel_v4_names_and_embeddings() -> None:
    v4 = {
        "ai.operationId": "ai.streamText.doStream",
        "ai.usage.promptTokens": 9,
        "ai.usage.completionTokens": 3,
    }
    call = read_span(v4)
    assert call is not None and call.usage == Usage(9, 3)
    embed = {
        "ai.operationId": "ai.embedMany.doEmbed",
        "ai.usage.tokens": 77,
        "ai.model.id": "text-embedding-3-small",
    }
    call = read_span(embed)
    assert call is not None and call.usage == Usage(77, 0)


@pytest.mark.parametrize(
    "attributes",
    [
        {"ai.operationId": "ai.generateText", "ai.usage.inputTokens": 500, "ai.usage.outputTokens": 50},
        {"openinference.span.kind": "AGENT", "llm.token_count.prompt": 5, "llm.token_count.completion": 1},
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.usage.input_tokens": 5,
            "gen_ai.usage.output_tokens": 1,
        },
    ],
)
def test_spans_that_sum_other_calls_are_refused(attributes: dict[str, object]) -> None:
    with pytest.raises(NotACall):
        read_span(attributes)


def test_openinference_llm_span() -> None:
    call = read_span(OPENINFERENCE_LLM)
    assert call is not None
    assert call.convention == "openinference"
    assert call.usage == Usage(2000, 120, cache_read_tokens=1500, cache_write_tokens=400)
    assert (call.model, call.provider) == ("claude-3-5-sonnet-20241022", "anthropic")


def test_openinference_total_only_is_unknown() -> None:
    call = read_span(
        {"openinference.span.kind": "LLM", "llm.token_count.total": 50, "llm.model_name": "gpt-4o"}
    )
    assert call is not None and call.usage.status is UsageStatus.UNKNOWN
    assert "only llm.token_count.total" in (call.usage.reason or "")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-5, "negative"),
        (10**12, "absurd"),
        (1.5, "not a whole number"),
        ("many", "not a whole number"),
        (True, "not a whole number"),
    ],
)
def test_bad_counts_are_unknown_with_the_reason(value: object, reason: str) -> None:
    call = read_span(
        {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": value,
            "gen_ai.usage.output_tokens": 1,
        }
    )
    assert call is not None
    assert call.usage.status is UsageStatus.UNKNOWN
    assert reason in (call.usage.reason or "")
    assert call.model == "gpt-4o"


def test_parts_larger_than_their_total_are_unknown() -> None:
    # Anthropic's own input_tokens leaves the cache out; an emitter copying it breaks the convention
    call = read_span(
        {
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 1,
            "gen_ai.usage.cache_read.input_tokens": 900,
        }
    )
    assert call is not None and call.usage.status is UsageStatus.UNKNOWN
    assert "exceed the input tokens" in (call.usage.reason or "")
    call = read_span(
        {
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 1,
            "gen_ai.usage.reasoning.output_tokens": 2,
        }
    )
    assert call is not None and "reasoning tokens (2) exceed" in (call.usage.reason or "")


def test_a_span_without_usage_is_none() -> None:
    assert read_span({"http.method": "POST", "gen_ai.request.model": "gpt-4o"}) is None
    assert read_span({"ai.operationId": "ai.toolCall", "ai.toolCall.name": "search"}) is None


def _span(span_id: int, parent: int, attributes: dict[str, object], name: str = "span") -> SpanData:
    return SpanData(
        b"t" * 16,
        span_id.to_bytes(8, "big"),
        parent.to_bytes(8, "big") if parent else b"",
        name,
        0,
        0,
        attributes,
    )


def test_attribution_from_the_span_then_its_ancestors_then_the_trace() -> None:
    root = _span(1, 0, {"gen_ai.conversation.id": "conv-9", "user.id": "ann"})
    agent = _span(2, 1, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"})
    llm = _span(3, 2, dict(OPENAI_V2_CHAT))
    known = {s.span_id: s for s in (root, agent, llm)}
    assert attribute(llm, known.get, "trace") == ("researcher", "conv-9", "ann")
    alone = _span(4, 99, dict(OPENAI_V2_CHAT))
    assert attribute(alone, known.get, "trace-hex") == (None, "trace-hex", None)


def test_attribution_openinference_agent_span_and_vercel_function_id() -> None:
    agent = _span(1, 0, {"openinference.span.kind": "AGENT"}, name="planner")
    llm = _span(2, 1, dict(OPENINFERENCE_LLM))
    assert attribute(llm, {agent.span_id: agent}.get, "t") == ("planner", "conv-1", "u-7")
    vercel = _span(3, 0, dict(VERCEL_DO_GENERATE))
    assert attribute(vercel, {}.get, "t") == ("researcher", "s-42", None)


@pytest.mark.parametrize(
    ("system", "address", "provider"),
    [
        ("openai", "api.deepseek.com", "deepseek"),  # an openai client on DeepSeek's API
        ("openai", "openrouter.ai", "openrouter"),
        ("anthropic", "api.moonshot.ai", "moonshotai"),
        ("openai", "myres.openai.azure.com", "azure"),
        ("openai", "api.openai.com", "openai"),
        ("openai", "127.0.0.1", "openai"),  # a local server or proxy: the SDK's name stays
        ("groq", "api.deepseek.com", "groq"),  # a provider named by the span, not an SDK's name: kept
        (None, "api.x.ai", "x-ai"),
    ],
)
def test_an_sdk_named_span_is_priced_as_the_api_its_server_address_is(
    system: str | None, address: str, provider: str
) -> None:
    # semconv: gen_ai.system names the instrumented client's SDK; server.address the host it called
    attributes: dict[str, object] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "deepseek-chat",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 4,
        "server.address": address,
    }
    if system is not None:
        attributes["gen_ai.system"] = system
    call = read_span(attributes)
    assert call is not None
    assert call.provider == provider
