"""Golden fixtures for the usage classes issue 17 found misread, streamed and not: payload → exact Usage
→ exact cost (`tt.price`), the cost equal to genai-prices' `calc_price` on the same usage.

- Groq streams report usage in `x_groq.usage` on the final chunk (and, with `include_usage`, again in an
  OpenAI usage chunk: read once, never added).
- xAI's OpenAI-compatible chat counts reasoning tokens outside `completion_tokens`
  (total = prompt + completion + reasoning): output = completion + reasoning, streamed as plain.
- xAI's native gRPC SDK (`xai-sdk`): `SamplingUsage` of responses and stream chunks.
- Realtime (OpenAI, Azure): `response.done` usage with text / audio / cached details.
"""

from __future__ import annotations

import copy
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from tests.pricing.test_every_unit import as_genai_usage

import tokentrail as tt
from tokentrail import Usage, UsageStatus
from tokentrail.adapters import capture, capture_stream, usage_from_response, usage_from_stream
from tokentrail.adapters import xai as xai_adapter
from tokentrail.adapters.openai import ChatStream, reasoning_outside_completion


def assert_cost(usage: Usage, model: str, provider: str, catalog_id: str, expected: str) -> None:
    """`tt.price` gives exactly `expected` USD, and genai-prices prices the same usage the same."""
    ours = tt.price(usage, model, provider)
    assert ours.priced, ours.reason
    assert ours.total == Decimal(expected)
    theirs = genai_prices.calc_price(as_genai_usage(usage), model, provider_id=catalog_id)
    assert theirs.total_price == ours.total


def sse(events: list[Any]) -> list[str]:
    """The events as the wire carries them (SSE blocks), ending with [DONE]."""
    return [f"data: {json.dumps(event)}\n\n" for event in events] + ["data: [DONE]\n\n"]


# -- Groq: x_groq.usage ---------------------------------------------------------------------------------
#
# The final chunk is the one recorded in vercel/ai#1651 (https://github.com/vercel/ai/issues/1651, Groq,
# llama3-8b-8192, 2024-05-19), verbatim. The chunks before it follow groq-python's `ChatCompletionChunk`
# (groq/groq-python@2f14acf633619dde877fda2cbaf7c5873d6a692c src/groq/types/chat/chat_completion_chunk.py:
# `x_groq.id` "Sent only in the first and final chunk", `x_groq.usage` "Only sent in the final chunk").
# With `stream_options.include_usage` Groq also sends the OpenAI usage chunk (choices empty, top-level
# `usage`) after it (Portkey-AI/gateway#1338, "extra usage chunk if stream_options.include_usage is true").

GROQ_ID = "chatcmpl-8566e76f-7ded-47d7-a2ca-d212098af00c"
GROQ_USAGE = {
    "queue_time": 0.07535312,
    "prompt_tokens": 23,
    "prompt_time": 0.006,
    "completion_tokens": 19,
    "completion_time": 0.022,
    "total_tokens": 42,
    "total_time": 0.027999999999999997,
}


def groq_chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": GROQ_ID,
        "object": "chat.completion.chunk",
        "created": 1716131679,
        "model": "llama3-8b-8192",
        "system_fingerprint": "fp_179b0f92c9",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        **extra,
    }


GROQ_STREAM = [
    groq_chunk({"role": "assistant", "content": ""}, x_groq={"id": "req_01hy8ppkajfqk987jv2vx88m9r"}),
    groq_chunk({"content": "Groundhog"}),
    groq_chunk({"content": " Day, but for cats."}),
    groq_chunk({}, "stop", x_groq={"id": "req_01hy8ppkajfqk987jv2vx88m9r", "usage": GROQ_USAGE}),
]
GROQ_USAGE_CHUNK = {  # the include_usage chunk (same counts as x_groq.usage)
    "id": GROQ_ID,
    "object": "chat.completion.chunk",
    "created": 1716131679,
    "model": "llama3-8b-8192",
    "choices": [],
    "usage": dict(GROQ_USAGE),
}
GROQ_EXPECTED = Usage(input_tokens=23, output_tokens=19)


@pytest.mark.parametrize("provider", [None, "groq"])
def test_groq_stream_reads_the_final_x_groq_usage(provider: str | None) -> None:
    captured = capture_stream(sse(GROQ_STREAM), provider)
    assert captured.usage == GROQ_EXPECTED
    assert captured.model == "llama3-8b-8192"
    assert_cost(captured.usage, "llama3-8b-8192", "groq", "groq", "0.00000267")  # 23 × 0.05 + 19 × 0.08 per M


def test_groq_stream_through_the_openai_sdk_chunk_type() -> None:
    # The openai SDK (a Groq base_url) keeps `x_groq` as an extra field of its ChatCompletionChunk.
    chunks = [ChatCompletionChunk.model_validate(chunk) for chunk in GROQ_STREAM]
    assert usage_from_stream(chunks, "groq") == GROQ_EXPECTED


@pytest.mark.parametrize("usage_chunk_first", [False, True])
def test_groq_x_groq_and_include_usage_chunk_are_one_report_never_added(usage_chunk_first: bool) -> None:
    events = (
        [*GROQ_STREAM, GROQ_USAGE_CHUNK]
        if not usage_chunk_first
        else [
            *GROQ_STREAM[:-1],
            GROQ_USAGE_CHUNK,
            GROQ_STREAM[-1],
        ]
    )
    assert usage_from_stream(sse(events), "groq") == GROQ_EXPECTED


def test_groq_top_level_usage_wins_over_x_groq_usage() -> None:
    # The OpenAI usage chunk is the report the request asked for: once seen, x_groq.usage is not read.
    differing = copy.deepcopy(GROQ_USAGE_CHUNK)
    differing["usage"]["completion_tokens"] = 20
    differing["usage"]["total_tokens"] = 43
    events = [*GROQ_STREAM[:-1], differing, GROQ_STREAM[-1]]
    assert usage_from_stream(events, "groq") == Usage(input_tokens=23, output_tokens=20)


def test_groq_stream_cut_before_the_final_chunk_is_unknown_with_the_reason() -> None:
    usage = usage_from_stream(GROQ_STREAM[:-1], "groq", aborted=True)
    assert usage.status is UsageStatus.UNKNOWN
    assert "without reporting usage" in (usage.reason or "")


def test_groq_final_chunk_is_final_even_when_the_stream_is_closed_as_aborted() -> None:
    # Stopping right after the final chunk (before [DONE]) loses nothing: x_groq.usage is the last report.
    assert usage_from_stream(GROQ_STREAM, "groq", aborted=True) == GROQ_EXPECTED


def test_groq_malformed_x_groq_usage_is_unknown_naming_it() -> None:
    broken = copy.deepcopy(GROQ_STREAM)
    broken[-1]["x_groq"]["usage"]["prompt_tokens"] = -1
    usage = usage_from_stream(broken, "groq")
    assert usage.status is UsageStatus.UNKNOWN
    assert "chunk.x_groq.usage.prompt_tokens is negative" in (usage.reason or "")


# -- xAI, OpenAI-compatible chat: reasoning outside completion_tokens ------------------------------------
#
# xAI: "reasoning token consumption will be counted separately from completion_tokens, but will be counted
# in the total_tokens" (docs.x.ai/docs/key-information/consumption-and-rate-limits, quoted in
# vercel/ai#12425, https://github.com/vercel/ai/pull/12425). Counts from that PR's live grok-3-mini call:
# completion_tokens=1, reasoning_tokens=386, total_tokens=399 (so prompt_tokens=12). xAI sends the running
# usage on every chunk (M-Lai-ai/LLM-Provider-reference Grok/streaming.md, recorded grok-beta stream) and,
# with include_usage, a last chunk with empty choices (BerriAI/litellm#17136, grok-4-1-fast).

XAI_ID = "5d2f3b55-4a35-4b8a-a9a8-0c4f1f4b0a10"


def xai_usage(completion: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": 12,
        "completion_tokens": completion,
        "total_tokens": 12 + completion + reasoning,
        "prompt_tokens_details": {
            "text_tokens": 12,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
        "num_sources_used": 0,
    }


def xai_chunk(
    delta: dict[str, Any], usage: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        "id": XAI_ID,
        "object": "chat.completion.chunk",
        "created": 1739000000,
        "model": "grok-3-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        "usage": usage,
        "system_fingerprint": "fp_6ca29cf396",
    }


XAI_STREAM = [
    xai_chunk({"role": "assistant", "reasoning_content": "The user"}, xai_usage(0, 2)),
    xai_chunk({"reasoning_content": " asks for one word."}, xai_usage(0, 386)),
    xai_chunk({"content": "Yes"}, xai_usage(1, 386), "stop"),
    {
        "id": XAI_ID,
        "object": "chat.completion.chunk",
        "created": 1739000000,
        "model": "grok-3-mini",
        "choices": [],
        "usage": xai_usage(1, 386),
        "system_fingerprint": "fp_6ca29cf396",
    },
]
XAI_BODY = {  # the same call, not streamed
    "id": XAI_ID,
    "object": "chat.completion",
    "created": 1739000000,
    "model": "grok-3-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Yes", "reasoning_content": "…", "refusal": None},
            "finish_reason": "stop",
        }
    ],
    "usage": xai_usage(1, 386),
    "system_fingerprint": "fp_6ca29cf396",
}
XAI_EXPECTED = Usage(input_tokens=12, output_tokens=387, reasoning_tokens=386)
XAI_COST = "0.0001971"  # 12 × 0.30 + 387 × 0.50 per M (grok-3-mini)


@pytest.mark.parametrize("provider", ["xai", "x-ai", "grok", "openai", None])
def test_xai_stream_counts_reasoning_on_top_of_completion(provider: str | None) -> None:
    # Known as xAI by the provider name, or (an openai client pointed at api.x.ai, recorded as "openai")
    # by its own total (prompt + completion + reasoning) and its grok-* model.
    usage = usage_from_stream(sse(XAI_STREAM), provider)
    assert usage == XAI_EXPECTED
    assert_cost(usage, "grok-3-mini", "xai", "x-ai", XAI_COST)


@pytest.mark.parametrize("provider", ["xai", "x-ai", "grok"])
def test_xai_stream_reads_as_the_plain_body_does(provider: str) -> None:
    assert usage_from_response(XAI_BODY, provider) == usage_from_stream(XAI_STREAM, provider) == XAI_EXPECTED


@pytest.mark.parametrize("provider", ["xai", "openai"])
def test_xai_chat_completion_sdk_objects_streamed_and_not(provider: str) -> None:
    # The openai SDK's own types (the fast path for ChatCompletion), as an openai client on api.x.ai gets them.
    assert usage_from_response(ChatCompletion.model_validate(XAI_BODY), provider) == XAI_EXPECTED
    chunks = [ChatCompletionChunk.model_validate(chunk) for chunk in XAI_STREAM]
    assert usage_from_stream(chunks, provider) == XAI_EXPECTED


def test_xai_running_usage_cut_mid_stream_is_partial_with_what_was_seen() -> None:
    usage = usage_from_stream(XAI_STREAM[:2], "xai", aborted=True)
    assert usage.status is UsageStatus.PARTIAL
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (12, 386, 386)


# A real Grok usage from Wei-Shaw/sub2api#5771 (prompt 10120 + completion 1499 + reasoning 2809 =
# total 14428, 128 cached); xAI's own cost_in_usd_ticks for it was 232856000 (= $0.0232856) at
# Grok 4.20's $1.25 / $0.20 cached / $2.50 per M.
SUB2API_BODY: dict[str, Any] = {
    "id": "sub2api-5771",
    "object": "chat.completion",
    "created": 1755475200,
    "model": "grok-4.20",
    "choices": [],
    "usage": {
        "prompt_tokens": 10120,
        "completion_tokens": 1499,
        "total_tokens": 14428,
        "prompt_tokens_details": {"cached_tokens": 128},
        "completion_tokens_details": {"reasoning_tokens": 2809},
    },
}
SUB2API_EXPECTED = Usage(input_tokens=10120, output_tokens=4308, cache_read_tokens=128, reasoning_tokens=2809)


def test_xai_sub2api_payload_non_streamed_is_priced_with_its_reasoning() -> None:
    body = SUB2API_BODY
    expected = SUB2API_EXPECTED
    assert usage_from_response(body, "xai") == expected
    assert usage_from_response(ChatCompletion.model_validate(body), "openai") == expected
    chunk = {**body, "object": "chat.completion.chunk"}
    assert usage_from_stream([chunk], "xai") == expected
    ours = tt.price(expected, "grok-4.20", "xai", at=date(2026, 8, 18))
    assert ours.total == Decimal("0.0232856")  # xAI's own bill for the call, to the tick
    theirs = genai_prices.calc_price(
        as_genai_usage(expected),
        "grok-4.20",
        provider_id="x-ai",
        genai_request_timestamp=datetime(2026, 8, 18),
    )
    assert theirs.total_price == ours.total


# OpenAI's own reasoning usage stays as it is: reasoning is inside completion_tokens, total = p + c.
OPENAI_REASONING = {
    "id": "chatcmpl-abc",
    "object": "chat.completion.chunk",
    "created": 1739000000,
    "model": "o3-mini-2025-01-31",
    "choices": [],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
    },
}


@pytest.mark.parametrize("provider", [None, "openai", "azure", "groq"])
def test_openai_reasoning_usage_is_unaffected(provider: str | None) -> None:
    expected = Usage(input_tokens=1200, output_tokens=300, reasoning_tokens=256)
    assert usage_from_stream([OPENAI_REASONING], provider) == expected
    body = {**OPENAI_REASONING, "object": "chat.completion"}
    assert usage_from_response(ChatCompletion.model_validate(body), provider) == expected


@pytest.mark.parametrize(
    ("prompt", "completion", "reasoning", "total", "provider", "model", "outside"),
    [
        (10, 5, 0, 15, "xai", "grok-3-mini", False),  # no reasoning: nothing to place
        (10, 5, 3, 15, "xai", None, True),  # the xAI name decides (as the catalog's x-ai extractor reads)
        (10, 5, 3, 18, "openai", "my-model", True),  # total = p + c + r
        (10, 5, 3, 15, "openai", "grok-3-mini", False),  # total = p + c: inside, whatever the name
        (10, 5, 3, None, "openai", "grok-3-mini", True),  # no total: a bare grok-* model
        (10, 5, 3, None, "openrouter", "x-ai/grok-3-mini", False),  # a router's name, no total: inside
        (10, 2, 3, None, "openai", "my-model", True),  # more reasoning than completion: only outside fits
        (10, 5, 3, 99, "openai", "my-model", False),  # a total that tells nothing: OpenAI's convention
    ],
)
def test_reasoning_outside_completion_rule(
    prompt: int,
    completion: int,
    reasoning: int,
    total: int | None,
    provider: str,
    model: str | None,
    outside: bool,
) -> None:
    assert reasoning_outside_completion(prompt, completion, reasoning, total, provider, model) is outside


def test_a_chat_stream_with_more_reasoning_than_completion_is_never_unknown() -> None:
    # The consistency rule: before, such a stream ended `unknown` ("reasoning_tokens cannot exceed ...").
    chunk = copy.deepcopy(XAI_STREAM[-1])
    chunk["model"] = "some-host/reasoner"
    del chunk["usage"]["total_tokens"]
    stream = ChatStream("openai")
    stream.feed(chunk)
    stream.close()
    assert stream.usage() == XAI_EXPECTED


# -- xAI native SDK (xai-sdk): SamplingUsage ------------------------------------------------------------
#
# xai-sdk 1.21.0 (PyPI), xai_sdk/proto/v6/usage_pb2.pyi `SamplingUsage`: completion_tokens,
# reasoning_tokens, prompt_tokens, total_tokens, prompt_text_tokens, cached_prompt_text_tokens,
# prompt_image_tokens, num_sources_used, server_side_tools_used (repeated ServerSideTool),
# cost_in_usd_ticks (optional, 1 tick = 1e-10 USD, xai_sdk/cost.py). `chat.stream()` yields
# (Response, Chunk) pairs and copies each chunk's usage over the response's (xai_sdk/chat.py
# `process_chunk`). The JSON below is `MessageToDict(..., preserving_proto_field_name=True)` of that
# message, as protobuf writes it (int64 values as strings).

NATIVE_JSON = {
    "id": "3f4a1b2c-native",
    "model": "grok-4-0709",
    "usage": {
        "completion_tokens": 120,
        "reasoning_tokens": 480,
        "prompt_tokens": 2050,
        "total_tokens": 2650,
        "prompt_text_tokens": 2050,
        "cached_prompt_text_tokens": 1536,
        "server_side_tools_used": ["SERVER_SIDE_TOOL_WEB_SEARCH", "SERVER_SIDE_TOOL_X_SEARCH"],
        "cost_in_usd_ticks": "116940000",
    },
}
NATIVE_EXPECTED = Usage(
    input_tokens=2050,
    output_tokens=600,
    cache_read_tokens=1536,
    reasoning_tokens=480,
    web_searches=1,
    social_searches=1,
)
NATIVE_COST = "0.011694"  # (2050 − 1536) × 3 + 1536 × 0.75 + 600 × 15 per M (grok-4-0709); tools unpriced


def test_native_sampling_usage_json_is_read_as_the_catalog_reads_it() -> None:
    captured = xai_adapter.extract(NATIVE_JSON)
    assert captured.usage == NATIVE_EXPECTED
    assert captured.provider_cost == Decimal("0.0116940000")
    assert (captured.model, captured.response_id) == ("grok-4-0709", "3f4a1b2c-native")
    assert_cost(captured.usage, "grok-4-0709", "xai", "x-ai", NATIVE_COST)
    # genai-prices' x-ai `default` extractor reads the same body the same way (its tool counts aside).
    theirs = genai_prices.extract_usage(NATIVE_JSON, provider_id="x-ai", api_flavor="default").usage
    assert (theirs.input_tokens, theirs.output_tokens, theirs.cache_read_tokens) == (2050, 600, 1536)
    assert usage_from_response(NATIVE_JSON, "xai").output_tokens == 600


def test_native_usage_that_cannot_be_read_is_unknown_never_zero() -> None:
    broken = copy.deepcopy(NATIVE_JSON)
    broken["usage"]["reasoning_tokens"] = -5
    captured = xai_adapter.extract(broken)
    assert captured.usage.status is UsageStatus.UNKNOWN
    assert "usage.reasoning_tokens is negative" in (captured.usage.reason or "")
    assert xai_adapter.extract({"id": "x", "model": "grok-4"}).usage.status is UsageStatus.UNKNOWN


class TestRealXaiSdk:
    """The SDK's own classes (protobuf messages and the `xai_sdk.chat` wrappers), built locally."""

    @pytest.fixture(autouse=True)
    def sdk(self) -> Any:
        return pytest.importorskip("xai_sdk", reason="xai-sdk is not installed (it pins packaging<26)")

    def native(self) -> tuple[Any, Any, Any]:
        from xai_sdk.proto import chat_pb2, usage_pb2

        usage = usage_pb2.SamplingUsage(
            completion_tokens=120,
            reasoning_tokens=480,
            prompt_tokens=2050,
            total_tokens=2650,
            prompt_text_tokens=2050,
            cached_prompt_text_tokens=1536,
            server_side_tools_used=["SERVER_SIDE_TOOL_WEB_SEARCH", "SERVER_SIDE_TOOL_X_SEARCH"],
            cost_in_usd_ticks=116940000,
        )
        return chat_pb2, usage_pb2, usage

    def test_response_and_its_proto(self) -> None:
        from xai_sdk.chat import Response

        chat_pb2, _, usage = self.native()
        proto = chat_pb2.GetChatCompletionResponse(id="3f4a1b2c-native", model="grok-4-0709", usage=usage)
        for response in (Response(proto, 0), proto):
            captured = capture(response)
            assert captured.usage == NATIVE_EXPECTED
            assert (captured.provider, captured.model) == ("xai", "grok-4-0709")
            assert captured.provider_cost == Decimal("0.0116940000")
        assert capture(proto, "x-ai").provider == "x-ai"
        assert capture(chat_pb2.GetChatCompletionResponse(id="x")).usage.status is UsageStatus.UNKNOWN

    def test_stream_pairs_and_chunks(self) -> None:
        from xai_sdk.chat import Chunk, Response

        chat_pb2, usage_pb2, usage = self.native()

        def chunk(text: str, running: Any, finish: str | None = None) -> Any:
            output = chat_pb2.CompletionOutputChunk(
                index=0, delta=chat_pb2.Delta(content=text, role="ROLE_ASSISTANT"), finish_reason=finish
            )
            return chat_pb2.GetChatCompletionChunk(
                id="s", model="grok-4-0709", outputs=[output], usage=running
            )

        protos = [
            chunk("", usage_pb2.SamplingUsage(prompt_tokens=2050, reasoning_tokens=300, total_tokens=2350)),
            chunk(
                "Hi", usage_pb2.SamplingUsage(prompt_tokens=2050, completion_tokens=60, reasoning_tokens=480)
            ),
            chunk(" there", usage, "REASON_STOP"),
        ]
        response = Response(chat_pb2.GetChatCompletionResponse(), 0)
        pairs = []
        for proto in protos:  # as chat.stream() does
            response.process_chunk(proto)
            pairs.append((response, Chunk(proto, 0)))
        for events in (pairs, [pair[1] for pair in pairs], protos):
            captured = capture_stream(events)
            assert captured.usage == NATIVE_EXPECTED
            assert (captured.provider, captured.model) == ("xai", "grok-4-0709")
        assert usage_from_response(response) == NATIVE_EXPECTED  # the stream's accumulated response
        cut = usage_from_stream(pairs[:2], aborted=True)
        assert cut.status is UsageStatus.PARTIAL
        assert (cut.input_tokens, cut.output_tokens, cut.reasoning_tokens) == (2050, 540, 480)


# -- Realtime: response.done ----------------------------------------------------------------------------
#
# Shape: openai-python `openai/types/realtime/response_done_event.py` and `realtime_response_usage*.py`
# (the installed openai package; "Cached tokens here are counted as a subset of input tokens"), the
# event from platform.openai.com/docs/api-reference/realtime-server-events/response/done. Azure OpenAI's
# Realtime API sends the same event (learn.microsoft.com/azure/ai-services/openai/realtime-audio-reference).

REALTIME_DONE = {
    "type": "response.done",
    "event_id": "event_3132",
    "response": {
        "object": "realtime.response",
        "id": "resp_001",
        "status": "completed",
        "status_details": None,
        "output": [],
        "conversation_id": "conv_001",
        "output_modalities": ["audio"],
        "usage": {
            "total_tokens": 1913,
            "input_tokens": 1431,
            "output_tokens": 482,
            "input_token_details": {
                "text_tokens": 1071,
                "audio_tokens": 360,
                "image_tokens": 0,
                "cached_tokens": 1024,
                "cached_tokens_details": {"text_tokens": 896, "audio_tokens": 128, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": 102, "audio_tokens": 380},
        },
    },
}
REALTIME_EXPECTED = Usage(
    input_tokens=1431,
    output_tokens=482,
    cache_read_tokens=1024,
    input_audio_tokens=360,
    cache_audio_read_tokens=128,
    output_audio_tokens=380,
)
# gpt-realtime per M: text in 4 (1071 − 896 = 175 uncached), cached text 0.4 (896), audio in 32
# (360 − 128 = 232 uncached), cached audio 0.4 (128), text out 16 (102), audio out 64 (380)
REALTIME_COST = "0.0344856"


@pytest.mark.parametrize("provider", [None, "openai", "azure"])
def test_realtime_response_done_dict(provider: str | None) -> None:
    captured = capture(REALTIME_DONE, provider)
    assert captured.usage == REALTIME_EXPECTED
    assert captured.provider == (provider or "openai")
    assert_cost(captured.usage, "gpt-realtime", "openai", "openai", REALTIME_COST)


def test_realtime_response_done_sdk_event() -> None:
    from openai.types.realtime.response_done_event import ResponseDoneEvent

    event = ResponseDoneEvent.model_validate(REALTIME_DONE)
    assert usage_from_response(event) == REALTIME_EXPECTED
    assert usage_from_response(event, "azure") == REALTIME_EXPECTED


def test_realtime_response_done_without_usage_is_unknown_with_the_status() -> None:
    event = copy.deepcopy(REALTIME_DONE)
    event["response"]["status"] = "failed"
    del event["response"]["usage"]
    from openai.types.realtime.response_done_event import ResponseDoneEvent

    usage = usage_from_response(ResponseDoneEvent.model_validate(event))
    assert usage.status is UsageStatus.UNKNOWN
    assert "response status failed" in (usage.reason or "")
