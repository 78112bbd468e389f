"""How each provider's fields map onto the one token convention, and how the provider is recognized."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from adapter_payloads import load

from tokentrail import AdapterError, Usage, UsageStatus
from tokentrail.adapters import capture, usage_from_response


def chat_body(**usage: Any) -> dict[str, Any]:
    return {"object": "chat.completion", "model": "gpt-4o", "usage": usage}


def fake_sdk_object(module: str, **fields: Any) -> Any:
    """An object whose class lives in `module`, like an SDK's pydantic model (without the SDK)."""
    cls = type("Response", (SimpleNamespace,), {"__module__": module})
    return cls(**fields)


# -- OpenAI -------------------------------------------------------------------------------------------


def test_openai_prompt_tokens_already_include_cached_tokens() -> None:
    usage = usage_from_response(
        chat_body(prompt_tokens=100, completion_tokens=5, prompt_tokens_details={"cached_tokens": 60})
    )
    assert (usage.input_tokens, usage.cache_read_tokens, usage.uncached_input_tokens) == (100, 60, 40)


def test_openai_cache_write_tokens_are_read() -> None:
    usage = usage_from_response(
        chat_body(prompt_tokens=100, completion_tokens=5, prompt_tokens_details={"cache_write_tokens": 30})
    )
    assert usage.cache_write_tokens == 30


def test_openai_null_details_are_absent_not_malformed() -> None:
    usage = usage_from_response(
        chat_body(
            prompt_tokens=10, completion_tokens=5, prompt_tokens_details=None, completion_tokens_details=None
        )
    )
    assert usage == Usage(input_tokens=10, output_tokens=5)


def test_openai_responses_web_search_counts_only_search_actions() -> None:
    body = load("openai/responses.json").payload
    body["output"] += [
        {
            "type": "web_search_call",
            "status": "completed",
            "action": {"type": "open_page", "url": "https://x"},
        },
        {"type": "web_search_call", "status": "completed"},
    ]
    assert usage_from_response(body).web_searches == 2


def test_azure_is_recognized_by_its_content_filter_results() -> None:
    assert capture(load("openai/azure_chat_completion.json").payload).provider == "azure"


def test_openai_compatible_host_keeps_the_provider_name_given() -> None:
    captured = capture(chat_body(prompt_tokens=10, completion_tokens=2), provider="groq")
    assert (captured.provider, captured.usage.input_tokens) == ("groq", 10)


def test_mistral_models_behind_an_openai_shape_are_recognized() -> None:
    body = chat_body(prompt_tokens=10, completion_tokens=2)
    body["model"] = "codestral-latest"
    assert capture(body).provider == "mistral"


# -- Anthropic ----------------------------------------------------------------------------------------


def test_anthropic_input_adds_cache_reads_and_writes_to_uncached_input() -> None:
    usage = usage_from_response(
        {
            "type": "message",
            "usage": {
                "input_tokens": 7,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 20,
                "output_tokens": 3,
            },
        }
    )
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (127, 100, 20)


def test_anthropic_cache_writes_are_summed_from_ttl_split_when_total_absent() -> None:
    usage = usage_from_response(
        {
            "type": "message",
            "usage": {
                "input_tokens": 1,
                "output_tokens": 1,
                "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
            },
        }
    )
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens, usage.input_tokens) == (10, 6, 11)


def test_anthropic_one_hour_writes_beyond_all_writes_are_malformed() -> None:
    usage = usage_from_response(
        {
            "type": "message",
            "usage": {
                "input_tokens": 1,
                "output_tokens": 1,
                "cache_creation_input_tokens": 5,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 6},
            },
        }
    )
    assert usage.status is UsageStatus.UNKNOWN
    assert "cache_write_1h_tokens" in (usage.reason or "")


def test_anthropic_priority_tier_and_fast_speed_become_price_context() -> None:
    captured = capture(
        {
            "type": "message",
            "usage": {"input_tokens": 1, "output_tokens": 1, "service_tier": "priority", "speed": "fast"},
        }
    )
    assert captured.price_context == {"service_tier": "priority", "speed": "fast"}


def test_anthropic_errored_batch_result_is_unknown_because_nothing_was_billed() -> None:
    usage = usage_from_response({"custom_id": "r1", "result": {"type": "errored", "error": {"type": "x"}}})
    assert usage.status is UsageStatus.UNKNOWN
    assert "errored" in (usage.reason or "")


# -- Gemini -------------------------------------------------------------------------------------------


def test_gemini_output_is_candidates_plus_thoughts() -> None:
    usage = usage_from_response(
        {"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 20}}
    )
    assert (usage.output_tokens, usage.reasoning_tokens) == (25, 20)


def test_gemini_sdk_objects_use_snake_case_and_enum_modalities() -> None:
    modality = enum.Enum("MediaModality", {"TEXT": "TEXT", "AUDIO": "AUDIO"})  # like google.genai's enum
    response = fake_sdk_object(
        "google.genai.types",
        model_version="gemini-2.5-flash",
        usage_metadata=SimpleNamespace(
            prompt_token_count=40,
            candidates_token_count=8,
            thoughts_token_count=None,
            cached_content_token_count=None,
            tool_use_prompt_token_count=None,
            total_token_count=48,
            prompt_tokens_details=[
                SimpleNamespace(modality=modality.TEXT, token_count=30),
                SimpleNamespace(modality=modality.AUDIO, token_count=10),
            ],
        ),
    )
    captured = capture(response)
    assert (captured.provider, captured.model) == ("google", "gemini-2.5-flash")
    assert captured.usage == Usage(input_tokens=40, output_tokens=8, input_audio_tokens=10)


def test_gemini_documents_count_as_images_and_video_is_kept() -> None:
    usage = usage_from_response(
        {
            "usageMetadata": {
                "promptTokenCount": 100,
                "promptTokensDetails": [
                    {"modality": "DOCUMENT", "tokenCount": 30},
                    {"modality": "IMAGE", "tokenCount": 20},
                    {"modality": "VIDEO", "tokenCount": 40},
                    {"modality": "TEXT", "tokenCount": 10},
                ],
            }
        }
    )
    assert (usage.input_image_tokens, usage.input_video_tokens, usage.output_tokens) == (50, 40, 0)


def test_gemini_batch_response_is_priced_as_batch() -> None:
    body = load("gemini/generate_content.json").payload
    captured = capture({"key": "request-1", "response": body})
    assert captured.price_context == {"processing": "batch"}
    assert captured.usage == load("gemini/generate_content.json").expected_usage()


# -- Bedrock ------------------------------------------------------------------------------------------


def test_bedrock_one_hour_cache_writes_come_from_cache_details() -> None:
    usage = usage_from_response(
        {
            "usage": {
                "inputTokens": 10,
                "outputTokens": 2,
                "cacheWriteInputTokens": 300,
                "cacheDetails": [{"ttl": "1h", "inputTokens": 200}, {"ttl": "5m", "inputTokens": 100}],
            }
        }
    )
    assert (usage.input_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (310, 300, 200)


def test_bedrock_invoke_model_body_given_as_bytes_is_decoded() -> None:
    body = json.dumps(load("bedrock/invoke_model_claude.json").payload).encode()
    captured = capture({"body": body, "contentType": "application/json"}, provider="bedrock")
    assert (captured.provider, captured.usage.output_tokens) == ("bedrock", 120)


def test_bedrock_invoke_model_body_still_a_stream_is_unknown_with_reason() -> None:
    usage = usage_from_response({"body": object(), "ResponseMetadata": {}}, provider="bedrock")
    assert usage.status is UsageStatus.UNKNOWN
    assert "InvokeModel body" in (usage.reason or "")


def test_bedrock_batch_record_is_priced_as_batch() -> None:
    record = {
        "recordId": "r1",
        "modelInput": {},
        "modelOutput": load("bedrock/invoke_model_claude.json").payload,
    }
    captured = capture(record)
    assert (captured.provider, captured.price_context) == ("bedrock", {"processing": "batch"})


# -- Mistral, Cohere, Ollama, LiteLLM -----------------------------------------------------------------


def test_cohere_sdk_float_counts_are_read_as_whole_numbers() -> None:
    response = fake_sdk_object(
        "cohere.v2.types.v2chat_response",
        usage=SimpleNamespace(
            billed_units=SimpleNamespace(input_tokens=12.0, output_tokens=30.0), tokens=None
        ),
    )
    captured = capture(response)
    assert (captured.provider, captured.usage) == ("cohere", Usage(input_tokens=12, output_tokens=30))


def test_cohere_falls_back_to_tokens_when_nothing_is_billed_yet() -> None:
    usage = usage_from_response(
        {
            "finish_reason": "COMPLETE",
            "usage": {"tokens": {"input_tokens": 50, "output_tokens": 9}, "cached_tokens": 20},
        }
    )
    assert usage == Usage(input_tokens=50, output_tokens=9, cache_read_tokens=20)


def test_ollama_without_prompt_eval_count_is_unknown_not_zero() -> None:
    body = load("ollama/chat.json").payload
    del body["prompt_eval_count"]
    usage = usage_from_response(body)
    assert usage.status is UsageStatus.UNKNOWN
    assert "prompt_eval_count is missing" in (usage.reason or "")


def test_ollama_chunk_that_is_not_final_is_unknown() -> None:
    usage = usage_from_response({"model": "llama3.2", "created_at": "2026-11-24T00:00:00Z", "done": False})
    assert usage.status is UsageStatus.UNKNOWN
    assert "done" in (usage.reason or "")


def test_litellm_is_recognized_by_its_sdk_class_and_priced_through_the_serving_provider() -> None:
    body = load("litellm/model_response.json").payload
    hidden = body.pop("_hidden_params")
    response = fake_sdk_object("litellm.types.utils", _hidden_params=hidden, **body)
    captured = capture(response)
    assert (captured.provider, captured.provider_cost) == ("anthropic", Decimal("0.020025"))


@pytest.mark.parametrize("cost", ["nan", float("inf"), -1.0, True, None, [1], "abc"])
def test_litellm_unusable_response_cost_is_dropped_without_harming_usage(cost: Any) -> None:
    body = load("litellm/model_response.json").payload
    body["_hidden_params"]["response_cost"] = float(cost) if cost == "nan" else cost
    captured = capture(body)
    assert captured.provider_cost is None
    assert captured.usage.status is UsageStatus.COMPLETE


# -- provider names, detection, strictness ------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("gemini", "google"),
        ("vertex_ai", "google"),
        ("AWS", "bedrock"),
        ("azure_openai", "azure"),
        ("mistralai", "mistral"),
    ],
)
def test_provider_aliases_resolve_to_the_pricing_name(given: str, expected: str) -> None:
    fixture = {
        "google": "gemini/generate_content.json",
        "bedrock": "bedrock/converse_cache.json",
        "azure": "openai/azure_chat_completion.json",
        "mistral": "mistral/chat_completion.json",
    }[expected]
    assert capture(load(fixture).payload, provider=given).provider == expected


def test_json_text_bodies_are_read() -> None:
    text = json.dumps(load("openai/chat_completion.json").payload)
    assert usage_from_response(text) == load("openai/chat_completion.json").expected_usage()
    assert usage_from_response(text.encode()) == load("openai/chat_completion.json").expected_usage()


def test_unrecognizable_payload_is_unknown_and_asks_for_the_provider() -> None:
    usage = usage_from_response({"hello": "world"})
    assert usage.status is UsageStatus.UNKNOWN
    assert "provider=" in (usage.reason or "")


def test_failed_capture_keeps_the_detected_provider_and_model() -> None:
    captured = capture({"object": "chat.completion", "model": "gpt-4o", "usage": {"prompt_tokens": -1}})
    assert (captured.provider, captured.model, captured.usage.status) == (
        "openai",
        "gpt-4o",
        UsageStatus.UNKNOWN,
    )


def test_strict_capture_raises_adapter_error_with_the_reason() -> None:
    with pytest.raises(AdapterError, match="prompt_tokens is negative"):
        usage_from_response(chat_body(prompt_tokens=-1, completion_tokens=1), strict=True)


def test_strict_capture_returns_usage_when_readable() -> None:
    payload = load("anthropic/message_cache.json")
    assert usage_from_response(payload.payload, strict=True) == payload.expected_usage()


def test_a_property_that_raises_is_read_as_absent() -> None:
    class Exploding:
        @property
        def usage(self) -> Any:
            raise RuntimeError("boom")

    usage = usage_from_response(Exploding(), provider="openai")
    assert usage.status is UsageStatus.UNKNOWN


def test_importing_the_adapters_imports_no_sdk() -> None:
    code = (
        "import sys, tokentrail.adapters, tokentrail.adapters.streams\n"
        "sdks = ('openai', 'anthropic', 'google', 'mistralai', 'cohere', 'ollama', 'litellm', 'boto3', 'botocore')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in sdks))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_bedrock_invoke_model_body_not_yet_read_is_unknown_and_left_unread() -> None:
    class StreamingBody:
        def __init__(self) -> None:
            self.reads = 0

        def read(self) -> bytes:
            self.reads += 1
            return b"{}"

    body = StreamingBody()
    usage = usage_from_response({"body": body, "contentType": "application/json"}, provider="bedrock")
    assert usage.status is UsageStatus.UNKNOWN
    assert "unread stream" in (usage.reason or "")
    assert body.reads == 0
