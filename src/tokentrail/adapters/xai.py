"""xAI's native gRPC SDK (`xai-sdk`): `chat.sample()` responses and `chat.stream()` chunks.

Objects are recognized by their class's module (`xai_sdk.…` wrappers such as `xai_sdk.chat.Response` /
`Chunk`, and the protobuf messages under `xai.api.v1.…`); `xai_sdk` is never imported. The usage is a
`SamplingUsage` (xai-proto `usage.proto`): `prompt_tokens` is every prompt token (text and image) with
`cached_prompt_text_tokens` ⊆ it and `prompt_image_tokens` ⊆ it; `completion_tokens` counts the answer
only and `reasoning_tokens` come on top of it (`total_tokens = prompt + completion + reasoning`), so the
output is completion + reasoning — the catalog's x-ai `default` extractor reads the same fields the same
way. `server_side_tools_used` lists one entry per server-side tool call (web search, X search, code
execution, collections / attachment search), counted as tool calls; `cost_in_usd_ticks` (1e-10 USD),
when the server reports it, is kept as the provider-reported cost.

Streaming (`chat.stream()` yields `(response, chunk)` pairs; a chunk alone, or its proto, also works):
each chunk's `usage` is the running usage so far (the SDK copies it over the response's at every chunk),
so the last one is read, never added up; a chunk whose outputs all carry a finish reason is the last.

The OpenAI-compatible endpoint (`https://api.x.ai/v1`, used through the openai SDK) is read by the
OpenAI adapter (see `openai.reasoning_outside_completion`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tokentrail._types import Usage
from tokentrail.adapters._base import (
    Captured,
    Fields,
    Malformed,
    StreamAccumulator,
    as_count,
    build_usage,
    describe,
    get_field,
    text_value,
)
from tokentrail.adapters._charged import USD_TICK

__all__ = ["PROVIDER", "ChatStream", "extract", "is_native", "sampling_usage"]

PROVIDER = "xai"
_NATIVE_MODULES = ("xai_sdk", "xai")  # the SDK's wrappers, and its generated protobuf modules (xai.api.v1)

# server-side tool (xai-proto `ServerSideTool`) → the Usage count of its calls
_TOOL_COUNTS = {
    "SERVER_SIDE_TOOL_WEB_SEARCH": "web_searches",
    "SERVER_SIDE_TOOL_X_SEARCH": "social_searches",
    "SERVER_SIDE_TOOL_CODE_EXECUTION": "code_executions",
    "SERVER_SIDE_TOOL_COLLECTIONS_SEARCH": "storage_searches",
    "SERVER_SIDE_TOOL_ATTACHMENT_SEARCH": "storage_searches",
}


def _native_module(obj: object) -> bool:
    module = getattr(type(obj), "__module__", "") or ""
    return module.split(".", 1)[0] in _NATIVE_MODULES


def is_native(obj: object) -> bool:
    """True for an xai-sdk response or chunk (wrapper or protobuf message), or a `(response, chunk)` pair."""
    if isinstance(obj, tuple):
        return len(obj) == 2 and all(_native_module(item) for item in obj)
    return _native_module(obj)


def _message(obj: object) -> object:
    """The protobuf message behind an SDK wrapper (the chunk of a `(response, chunk)` pair)."""
    if isinstance(obj, tuple):
        obj = obj[-1]
    if get_field(obj, "DESCRIPTOR") is None:  # a wrapper: `Response` / `Chunk` keep theirs in `proto`
        inner = get_field(obj, "proto")
        if inner is not None:
            return inner
    return obj


def _is_set(message: object, field: str) -> bool:
    """Whether a protobuf message has `field` set (for a mapping: present and not null)."""
    has_field = getattr(message, "HasField", None)
    if callable(has_field):
        try:
            return bool(has_field(field))
        except ValueError:  # not a message field: scalar fields are always "set"
            return get_field(message, field) is not None
    return get_field(message, field) is not None


def _tool_name(usage: object, value: object) -> str | None:
    """A `ServerSideTool` entry's name: protobuf keeps enum numbers, JSON keeps names."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        descriptor = get_field(usage, "DESCRIPTOR")
        try:
            enum = descriptor.fields_by_name["server_side_tools_used"].enum_type
            found = enum.values_by_number.get(value)
        except (AttributeError, KeyError, TypeError):
            return None
        return str(found.name) if found is not None else None
    return text_value(value)


def _tools(usage: object, where: str) -> list[object]:
    """`server_side_tools_used` as a list (a protobuf repeated field, or a JSON list)."""
    tools = get_field(usage, "server_side_tools_used")
    if tools is None:
        return []
    if not isinstance(tools, (str, bytes, bytearray, Mapping)):
        try:
            return list(tools)
        except TypeError:
            pass
    raise Malformed(f"{where}.server_side_tools_used must be a list, got {describe(tools)}")


def sampling_usage(raw_usage: object, where: str = "usage") -> tuple[Usage, Decimal | None]:
    """A `SamplingUsage` (message or its JSON) in the one convention, and the cost it reports (USD)."""
    usage = Fields(raw_usage, where)
    completion = usage.count("completion_tokens", required=True)
    reasoning = usage.count("reasoning_tokens")
    counts: dict[str, int] = {
        "input_tokens": usage.count("prompt_tokens", required=True),
        "output_tokens": completion + reasoning,
        "reasoning_tokens": reasoning,
        "cache_read_tokens": usage.count("cached_prompt_text_tokens"),
        "input_image_tokens": usage.count("prompt_image_tokens"),
    }
    usage.count("total_tokens")  # not used, but a malformed total means a malformed payload
    for value in _tools(raw_usage, where):
        count = _TOOL_COUNTS.get(_tool_name(raw_usage, value) or "")
        if count is not None:
            counts[count] = counts.get(count, 0) + 1
    cost = None
    if _is_set(raw_usage, "cost_in_usd_ticks"):
        ticks = get_field(raw_usage, "cost_in_usd_ticks")
        if isinstance(ticks, str) and ticks.isdigit():  # protobuf JSON writes int64 values as strings
            ticks = int(ticks)
        cost = as_count(ticks, f"{where}.cost_in_usd_ticks") * USD_TICK
    return build_usage(**counts), cost


def _model(message: object) -> str | None:
    return text_value(get_field(message, "model")) or None


def extract(response: object, provider: str = PROVIDER) -> Captured:
    """Usage of an xai-sdk `Response` (or its `GetChatCompletionResponse` proto, or a chunk).

    A native object is never handed on to another reader (the OpenAI reader would take its usage for
    an OpenAI one): what cannot be read is `unknown` here, with the reason.
    """
    message = _message(response)
    model = _model(message)
    try:
        if not _is_set(message, "usage"):
            raise Malformed(f"the xAI {type(message).__name__} reports no usage")
        usage, cost = sampling_usage(get_field(message, "usage"))
    except Malformed as exc:
        return Captured(Usage.unknown(exc.reason), model, provider)
    response_id = text_value(get_field(message, "id")) or None
    return Captured(usage, model, provider, provider_cost=cost, response_id=response_id)


class ChatStream(StreamAccumulator):
    """`chat.stream()` chunks: each carries the running usage; the last one read is the stream's."""

    complete_on_close = True

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)
        self._usage: Usage | None = None
        self.provider_cost: Decimal | None = None

    def _feed(self, event: object) -> None:
        chunk = _message(event)
        self.model = _model(chunk) or self.model
        if _is_set(chunk, "usage"):
            try:
                self._usage, self.provider_cost = sampling_usage(get_field(chunk, "usage"), "chunk.usage")
            except Malformed:
                self._usage = None  # a broken latest report must not leave an older one standing
                raise
        outputs: Any = get_field(chunk, "outputs")
        if self._usage is not None and outputs and all(_finished(output) for output in outputs):
            self.final = True

    def _seen(self) -> Usage | None:
        return self._usage

    def captured(self) -> Captured:
        return dataclasses.replace(super().captured(), provider_cost=self.provider_cost)


def _finished(output: object) -> bool:
    """Whether a `CompletionOutputChunk` carries a finish reason (0 / "REASON_INVALID" is none)."""
    reason = get_field(output, "finish_reason")
    if isinstance(reason, str):
        return reason not in ("", "REASON_INVALID")
    return isinstance(reason, int) and reason != 0
