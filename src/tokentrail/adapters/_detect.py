"""Which adapter reads a response or a stream: by the provider name given, the SDK type's module, or the
payload's shape. No SDK is imported: SDK objects are recognized by their class's module name.

Batch results are unwrapped first (OpenAI Batch output lines, Anthropic Message Batches results, Gemini
batch responses, Bedrock batch inference records) and priced as batch (`{"processing": "batch"}`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

from tokentrail.adapters import anthropic, bedrock, cohere, gemini, litellm, mistral, ollama, openai, xai
from tokentrail.adapters._base import (
    Captured,
    Malformed,
    StreamAccumulator,
    describe,
    get_field,
    is_record,
    model_name,
    text_value,
)

__all__ = [
    "ADAPTERS",
    "ALIASES",
    "Adapter",
    "canonical_provider",
    "detect_response",
    "detect_stream",
    "shape_provider",
    "unwrap_batch",
]

Extract = Callable[[object, str], Captured]
StreamFactory = Callable[[str], StreamAccumulator]


class Adapter(NamedTuple):
    extract: Extract
    provider: str  # the name to price with


ADAPTERS: dict[str, Extract] = {
    "openai": openai.extract,
    "azure": openai.extract,
    "anthropic": anthropic.extract,
    "google": gemini.extract,
    "bedrock": bedrock.extract,
    "mistral": mistral.extract,
    "cohere": cohere.extract,
    "ollama": ollama.extract,
    "litellm": litellm.extract,
}

ALIASES: dict[str, str] = {
    "azure_openai": "azure",
    "azure-openai": "azure",
    "azureopenai": "azure",
    "claude": "anthropic",
    "gemini": "google",
    "google-genai": "google",
    "google_genai": "google",
    "google-gla": "google",
    "vertex": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "google-vertex": "google",
    "aws": "bedrock",
    "aws-bedrock": "bedrock",
    "amazon-bedrock": "bedrock",
    "bedrock-runtime": "bedrock",
    "bedrock_converse": "bedrock",
    "mistralai": "mistral",
    "cohere_chat": "cohere",
}

# SDK packages, by the first part of their classes' module names.
_SDK_MODULES: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "vertexai": "google",
    "mistralai": "mistral",
    "cohere": "cohere",
    "ollama": "ollama",
    "litellm": "litellm",
}

_ANTHROPIC_EVENTS = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    }
)
_COHERE_EVENTS = frozenset(
    {
        "message-start",
        "message-end",
        "content-start",
        "content-delta",
        "content-end",
        "tool-plan-delta",
        "tool-call-start",
        "tool-call-delta",
        "tool-call-end",
        "citation-start",
        "citation-end",
    }
)
# Chat-chunk accumulators of providers whose chunks look like OpenAI's.
_CHAT_STREAMS: dict[str, StreamFactory] = {"mistral": mistral.ChatStream, "litellm": litellm.ChatStream}
_CONVERSE_EVENTS = (
    "messageStart",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
)


def canonical_provider(provider: str) -> str:
    """The name a provider is priced and reported by ("gemini" → "google", "aws" → "bedrock")."""
    name = provider.strip().lower()
    return ALIASES.get(name, name)


def _sdk_of(obj: object) -> str | None:
    module = getattr(type(obj), "__module__", "") or ""
    return _SDK_MODULES.get(module.split(".", 1)[0])


def _has(obj: object, *names: str) -> bool:
    return any(get_field(obj, name) is not None for name in names)


def _openai_compatible(response: object) -> str:
    if _has(response, "prompt_filter_results"):
        return "azure"
    model = (model_name(response) or "").lower().rsplit("/", 1)[-1]
    return "mistral" if model.startswith(mistral.MODEL_PREFIXES) else "openai"


def _provider_by_shape(response: object) -> str | None:
    if _has(response, "_hidden_params"):
        return "litellm"
    if _has(response, "usageMetadata", "usage_metadata"):
        return "google"
    if _has(response, "prompt_eval_count", "eval_count"):
        return "ollama"
    usage = get_field(response, "usage")
    if usage is not None:
        return _provider_by_usage(response, usage)
    if _has(response, "candidates"):
        return "google"
    if _has(response, "stopReason") or (_has(response, "body") and _has(response, "ResponseMetadata")):
        return "bedrock"
    if _has(response, "done") and _has(response, "created_at"):
        return "ollama"
    kind = text_value(get_field(response, "type"))
    if kind == "message":
        return "anthropic"
    if kind == "response.done":  # a Realtime API event (OpenAI, Azure)
        return "openai"
    if text_value(get_field(response, "object")) in ("chat.completion", "response"):
        return _openai_compatible(response)
    if _has(response, "finish_reason") and _has(response, "message"):
        return "cohere"
    return None


def _provider_by_usage(response: object, usage: object) -> str:
    if _has(usage, "inputTokens", "outputTokens"):
        return "bedrock"
    if _has(usage, "billed_units", "tokens"):
        return "cohere"
    if _has(usage, "prompt_tokens", "completion_tokens"):
        return _openai_compatible(response)
    if text_value(get_field(response, "object")) == "response":
        return "openai"
    if text_value(get_field(response, "type")) == "message":
        return "anthropic"
    anthropic_only = (
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "cache_creation",
        "service_tier",
    )
    if _has(usage, *anthropic_only):
        return "anthropic"
    if _has(usage, "input_tokens_details", "output_tokens_details"):
        return "openai"
    model = (model_name(response) or "").lower()
    return "anthropic" if "claude" in model else "openai"


def _no_reader(response: object, provider: str) -> Captured:
    raise Malformed(f"no reader knows this {type(response).__name__} from {provider}")


def shape_provider(response: object) -> str | None:
    """The provider whose reader a response's SDK type or shape calls for (None when nothing fits)."""
    found = _sdk_of(response) or _provider_by_shape(response)
    return _openai_compatible(response) if found == "openai" else found


def unwrap_batch(response: object) -> tuple[object, str | None]:
    """(the response inside a batch result, the provider it implies) or (response, None) when not batch."""
    if (
        type(response) is dict
        and "custom_id" not in response
        and "response" not in response
        and "recordId" not in response
    ):
        return response, None  # a JSON body with none of the keys a batch result wraps its response in
    if not is_record(response):
        return response, None
    inner = get_field(response, "response")
    if _has(response, "custom_id") and inner is not None and _has(inner, "body", "status_code"):
        error = get_field(response, "error")
        if error is not None:
            raise Malformed(f"batch request failed: {describe(error)}")
        body = get_field(inner, "body")
        return body, _openai_compatible(body) if body is not None else "openai"
    result = get_field(response, "result")
    if _has(response, "custom_id") and result is not None:
        kind = text_value(get_field(result, "type"))
        if kind != "succeeded":
            raise Malformed(f"batch request did not succeed (result.type is {kind!r}): nothing was billed")
        return get_field(result, "message"), "anthropic"
    if inner is not None and _has(inner, "usageMetadata", "usage_metadata", "candidates"):
        return inner, "google"
    if _has(response, "recordId") and _has(response, "modelOutput"):
        return get_field(response, "modelOutput"), "bedrock"
    return response, None


def detect_response(response: object, provider: str | None) -> tuple[object, Adapter, bool]:
    """(the response to read, its adapter, whether it is a batch result)."""
    if isinstance(response, (str, bytes, bytearray)):
        try:
            response = json.loads(response)
        except (ValueError, UnicodeDecodeError):
            raise Malformed(f"response text is not JSON: {describe(response)}") from None
    if response is None:
        raise Malformed("response is None")
    if type(response) is not dict and not is_record(response):
        raise Malformed(f"response must be an SDK object or a JSON object, got {describe(response)}")
    response, batch_provider = unwrap_batch(response)
    if response is None:
        raise Malformed("batch result holds no response")
    label = canonical_provider(provider) if provider else None
    if type(response) is not dict and xai.is_native(response):  # xai-sdk objects: only xAI's native reader
        return response, Adapter(xai.extract, label or xai.PROVIDER), False
    if label in ADAPTERS:
        return response, Adapter(ADAPTERS[label], label), batch_provider is not None
    found = _sdk_of(response) or batch_provider or _provider_by_shape(response)
    if found == "openai":
        found = _openai_compatible(response)
    if found is None:
        if label is None:
            kind = type(response).__name__
            raise Malformed(f"cannot tell which provider produced this {kind}; pass provider=")
        # a named provider with no reader of its own: only the catalog's extractors read it
        return response, Adapter(_no_reader, label), batch_provider is not None
    return response, Adapter(ADAPTERS[found], label or found), batch_provider is not None


# -- streams --------------------------------------------------------------------------------------------


def _stream_by_shape(event: object) -> tuple[StreamFactory, str] | None:
    kind = text_value(get_field(event, "type")) or ""
    if kind.startswith("response."):
        return openai.ResponsesStream, "openai"
    if kind in _ANTHROPIC_EVENTS:
        return anthropic.MessageStream, "anthropic"
    if kind in _COHERE_EVENTS:
        return cohere.ChatStream, "cohere"
    if _has(event, "_hidden_params"):
        return litellm.ChatStream, "litellm"
    is_chunk = text_value(get_field(event, "object")) == "chat.completion.chunk"
    if is_chunk or _has(event, "choices", "prompt_filter_results"):
        provider = _openai_compatible(event)
        return (mistral.ChatStream if provider == "mistral" else openai.ChatStream), provider
    if _has(event, "usageMetadata", "usage_metadata", "candidates"):
        return gemini.GenerateContentStream, "google"
    if _has(event, *_CONVERSE_EVENTS):
        return bedrock.ConverseStream, "bedrock"
    if _has(event, "chunk"):
        return bedrock.InvokeModelStream, "bedrock"
    if _has(event, "done") and _has(event, "model"):
        return ollama.ChatStream, "ollama"
    data = get_field(event, "data")
    if data is not None and _has(data, "choices"):  # mistralai's CompletionEvent wrapping a chunk
        return mistral.ChatStream, "mistral"
    return None


def detect_stream(event: object, provider: str | None) -> tuple[StreamFactory, str] | None:
    """The accumulator class for a stream whose first recognizable event is `event`, and its provider."""
    if xai.is_native(event):  # xai-sdk chunks, or chat.stream()'s (response, chunk) pairs
        return xai.ChatStream, canonical_provider(provider) if provider else xai.PROVIDER
    sdk = _sdk_of(event)
    found = _stream_by_shape(event)
    if found is None:
        return None
    factory, shape_provider = found
    if sdk == "litellm":
        factory, shape_provider = litellm.ChatStream, "litellm"
    label = canonical_provider(provider) if provider else ("mistral" if sdk == "mistral" else shape_provider)
    if label == "bedrock" and factory is anthropic.MessageStream:
        factory = bedrock.InvokeModelStream
    if factory in (openai.ChatStream, mistral.ChatStream, litellm.ChatStream):
        factory = _CHAT_STREAMS.get(label, factory)
    return factory, label
