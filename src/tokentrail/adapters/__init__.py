"""Provider adapters: read the usage a response (or a stream of events) reports, in the one convention.

`capture(response)` returns a `Captured` (usage, model, provider, price context, provider-reported
cost); `usage_from_response(response)` returns just the `Usage`. Both take SDK objects or raw JSON
bodies, detect the provider when not told, and never raise: unreadable usage becomes
`Usage.unknown(reason)` (pass `strict=True` to get an `AdapterError` instead).
"""

from __future__ import annotations

import dataclasses

from tokentrail._types import Usage
from tokentrail.adapters._base import Captured, Malformed, StreamAccumulator, logger, model_name
from tokentrail.adapters._detect import canonical_provider, detect_response
from tokentrail.adapters._instrument import instrument, instrumented, uninstrument, wrap
from tokentrail.adapters._mapped import named_read, planned_capture
from tokentrail.adapters._read import read_named_json, read_response
from tokentrail.adapters.streams import capture_stream, stream_accumulator, usage_from_stream
from tokentrail.errors import AdapterError

__all__ = [
    "Captured",
    "StreamAccumulator",
    "capture",
    "capture_stream",
    "instrument",
    "instrumented",
    "stream_accumulator",
    "uninstrument",
    "usage_from_response",
    "usage_from_stream",
    "wrap",
]


def capture(response: object, provider: str | None = None, *, strict: bool = False) -> Captured:
    """What `response` reveals about its cost: usage, model, provider, price context, reported cost.

    `provider` names who served the call ("openai", "azure", "anthropic", "gemini", "bedrock",
    "mistral", "cohere", "ollama", "litellm", or any OpenAI-compatible host such as "groq"); when
    None it is detected from the SDK type or the body's shape. Missing or malformed usage gives
    `Usage.unknown(reason)`, or raises `AdapterError` when `strict`.
    """
    if type(response) is dict and type(provider) is str and provider:
        try:
            read = read_named_json(response, provider)
        except Exception:  # the full path below reads it again, and says what is wrong
            read = None
        if read is not None:
            return planned_capture(response, read)
    label = _provider_label(provider)
    try:
        body, adapter, batch = detect_response(response, provider)
        label = adapter.provider
        captured = read_response(body, adapter)
        if batch:
            context = dict(captured.price_context)
            context["processing"] = "batch"
            captured = dataclasses.replace(captured, price_context=context)
        return captured
    except Malformed as exc:
        reason = exc.reason
    except Exception as exc:
        logger.debug("usage could not be read from %s", type(response).__name__, exc_info=True)
        reason = f"unexpected {type(exc).__name__} while reading usage: {exc}"
    if strict:
        raise AdapterError(reason)
    logger.debug("usage unknown: %s", reason)
    return Captured(Usage.unknown(reason), _model_or_none(response), label)


def usage_from_response(response: object, provider: str | None = None, *, strict: bool = False) -> Usage:
    """The `Usage` a response reports (see `capture`)."""
    usage = named_read(response, provider)  # read_named_json's usage, by the provider name's kept reader
    if usage is not None:
        return usage  # the usage `capture` would give, without its price context and Captured
    return capture(response, provider, strict=strict).usage


def _model_or_none(response: object) -> str | None:
    try:
        return model_name(response, "model", "modelVersion", "model_version")
    except Exception:
        return None


def _provider_label(provider: object) -> str:
    if isinstance(provider, str) and provider.strip():
        return canonical_provider(provider)
    return "unknown"
