"""OpenAI (and Azure OpenAI, same shapes): Chat Completions and the Responses API.

Chat Completions `usage`: `prompt_tokens` already counts cached tokens, so it is `input_tokens` as is;
`prompt_tokens_details.cached_tokens` → cache reads, `.cache_write_tokens` → cache writes,
`.audio_tokens` / `.image_tokens` → input media; `completion_tokens` counts reasoning, so it is
`output_tokens` as is; `completion_tokens_details.reasoning_tokens` → reasoning, `.audio_tokens` → output
audio. Responses `usage`: `input_tokens` (+ `input_tokens_details.cached_tokens` / `cache_write_tokens`),
`output_tokens` (+ `output_tokens_details.reasoning_tokens`); the built-in tools OpenAI bills per call are
counted from the `output` items: each `web_search_call` that ran a search is one web search, each
`file_search_call` one file (storage) search. The response's `service_tier` is the tier that actually served it.

Streaming: Chat Completions reports usage only in a last chunk with no choices, and only when the
request set `stream_options={"include_usage": True}`; the Responses API reports it in the
`response.completed` (or `.incomplete` / `.failed`) event.

OpenAI-compatible hosts that differ:
- xAI counts reasoning tokens *outside* `completion_tokens` (`total_tokens = prompt + completion +
  reasoning`, docs.x.ai "consumption and rate limits"), so its output is completion + reasoning; see
  `reasoning_outside_completion` for how a usage is known to be xAI's (the same reading as the catalog's
  x-ai extractor for non-streamed bodies, so streamed and plain calls agree).
- Gemini's OpenAI-compatible endpoint (provider "google") leaves the thinking tokens out of
  `completion_tokens` and gives no reasoning count, while its `total_tokens` counts them (a pydantic-ai
  recording: prompt 35, completion 12, total 126; Google bills thinking as output): the rest of the total is
  read as reasoning, on top of the completion (`hidden_thinking`).
- Groq's chunks carry the stream's usage in `x_groq.usage` on the final chunk (groq-python
  `ChatCompletionChunk.x_groq`: "Only sent in the final chunk"); with `include_usage` it also sends the
  OpenAI usage chunk, which then wins (the same counts, replaced, never added).
- Realtime (OpenAI and Azure): each `response.done` event carries that response's usage with text, audio
  and cached details (`extract_realtime`).
- OpenRouter (`usage.cost`), xAI (`usage.cost_in_usd_ticks`) and Perplexity (`usage.cost.total_cost`) report
  what a call cost, in plain bodies and a stream's usage chunk: kept as `provider_cost` (`_charged`; read for
  those providers only, other hosts' `cost` fields differ).
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tokentrail._types import Usage, UsageStatus, usage_builder
from tokentrail.adapters._base import (
    MAX_COUNT,
    Captured,
    Fields,
    Malformed,
    StreamAccumulator,
    build_usage,
    get_field,
    model_name,
    new_captured,
    text_value,
)
from tokentrail.adapters._charged import REPORTERS, charged
from tokentrail.errors import InvalidUsageError

__all__ = [
    "XAI_PROVIDERS",
    "ChatStream",
    "ImageStream",
    "ResponsesStream",
    "SpeechStream",
    "TranscriptionStream",
    "chat_usage",
    "extract",
    "extract_embeddings",
    "extract_images",
    "extract_realtime",
    "extract_speech",
    "extract_transcription",
    "price_context",
    "reasoning_outside_completion",
    "responses_usage",
]

_FINAL_RESPONSE_EVENTS = ("response.completed", "response.incomplete", "response.failed")


# Provider names under which reasoning tokens come on top of `completion_tokens` (xAI's Chat Completions).
XAI_PROVIDERS = frozenset({"xai", "x-ai", "x_ai", "grok"})


def reasoning_outside_completion(
    prompt: int, completion: int, reasoning: int, total: int | None, provider: str | None, model: str | None
) -> bool:
    """Whether a chat usage's `reasoning_tokens` come on top of `completion_tokens` (xAI) rather than
    inside them (OpenAI and every other OpenAI-compatible host).

    An xAI provider name says on top (as the catalog's x-ai extractor reads it); otherwise the usage's own
    total tells (prompt + completion + reasoning: on top; prompt + completion: inside); without a telling
    total, a bare `grok-*` model name says on top, and so does more reasoning than completion (impossible
    inside it). An OpenAI usage (total = prompt + completion) is never read as on top.
    """
    if not reasoning:
        return False
    if provider is not None and provider.strip().lower() in XAI_PROVIDERS:
        return True
    if total is not None:
        if total == prompt + completion + reasoning:
            return True
        if total == prompt + completion:
            return False
    if model is not None and model.strip().lower().startswith("grok"):
        return True
    return reasoning > completion


def chat_usage(usage: Fields, provider: str | None = None, model: str | None = None) -> Usage:
    """A Chat Completions `usage` object (also Mistral's and LiteLLM's) in the one convention; `provider`
    and `model` (when known) tell xAI's reasoning count apart (see `reasoning_outside_completion`)."""
    if type(usage.obj) is dict:
        counts = plain_chat_counts(usage.obj, dict.get, _is_dict, provider, model)
        if counts is not None:
            return _chat_usage_of(counts)
    return build_usage(**chat_counts(usage, provider, model))


def chat_counts(usage: Fields, provider: str | None = None, model: str | None = None) -> dict[str, int]:
    counts = {
        "input_tokens": usage.count("prompt_tokens", required=True),
        "output_tokens": usage.count("completion_tokens", required=True),
    }
    total = usage.optional_count("total_tokens")  # a malformed total means a malformed payload
    prompt = usage.child("prompt_tokens_details")
    if prompt is not None:
        counts["cache_read_tokens"] = prompt.count("cached_tokens")
        counts["cache_write_tokens"] = prompt.count("cache_write_tokens")
        counts["input_audio_tokens"] = prompt.count("audio_tokens")
        counts["input_image_tokens"] = prompt.count("image_tokens")
    completion = usage.child("completion_tokens_details")
    if completion is not None:
        counts["reasoning_tokens"] = completion.count("reasoning_tokens")
        counts["output_audio_tokens"] = completion.count("audio_tokens")
        counts["output_image_tokens"] = completion.count("image_tokens")
        reasoning = counts["reasoning_tokens"]
        if reasoning and reasoning_outside_completion(
            counts["input_tokens"], counts["output_tokens"], reasoning, total, provider, model
        ):
            counts["output_tokens"] += reasoning
    if provider == "openrouter":
        counts["web_searches"] = openrouter_searches(usage)
    elif provider == "google" and not counts.get("reasoning_tokens"):
        hidden = hidden_thinking(counts["input_tokens"], counts["output_tokens"], total)
        counts["output_tokens"] += hidden
        counts["reasoning_tokens"] = hidden
    return counts


def hidden_thinking(prompt: int, completion: int, total: int | None) -> int:
    """The thinking tokens a Gemini OpenAI-compatible usage with no reasoning count counts in its total only
    (see the module): what the total has beyond prompt and completion."""
    return max(total - prompt - completion, 0) if total is not None else 0


def openrouter_searches(usage: Fields) -> int:
    """The web searches OpenRouter's server tools ran for the call, billed per search (the catalog's web search
    prices of its models): `web_search_requests` of the usage's `server_tool_use` (its API reference) or
    `server_tool_use_details` (what its chat completions send)."""
    for name in ("server_tool_use", "server_tool_use_details"):
        tools = usage.child(name)
        if tools is not None and tools.has("web_search_requests"):
            return tools.count("web_search_requests")
    return 0


def responses_usage(usage: Fields, tool_calls: tuple[int, int] = (0, 0)) -> Usage:
    """A Responses API `usage` object in the one convention, with the (web, file) searches `billed_tool_calls`
    counted in the response's output."""
    counts = {
        "input_tokens": usage.count("input_tokens", required=True),
        "output_tokens": usage.count("output_tokens", required=True),
        "web_searches": tool_calls[0],
        "storage_searches": tool_calls[1],
    }
    usage.count("total_tokens")
    inputs = usage.child("input_tokens_details")
    if inputs is not None:
        counts["cache_read_tokens"] = inputs.count("cached_tokens")
        counts["cache_write_tokens"] = inputs.count("cache_write_tokens")
    outputs = usage.child("output_tokens_details")
    if outputs is not None:
        counts["reasoning_tokens"] = outputs.count("reasoning_tokens")
    return build_usage(**counts)


def billed_tool_calls(response: object) -> tuple[int, int]:
    """The built-in tool calls of a Responses API `output` list that OpenAI bills per call: (web searches,
    file searches). A `web_search_call` counts when it ran a search (an `open_page` or `find_in_page` action
    reads a page a search found); every `file_search_call` counts (the catalog's `storage_searches`)."""
    output = get_field(response, "output")
    if not isinstance(output, (list, tuple)):
        return (0, 0)
    searches = files = 0
    for item in output:
        kind = text_value(get_field(item, "type"))
        if kind == "file_search_call":
            files += 1
        elif kind == "web_search_call":
            action = get_field(item, "action")
            if action is None or text_value(get_field(action, "type")) in (None, "search"):
                searches += 1
    return (searches, files)


def price_context(response: object) -> dict[str, str]:
    tier = text_value(get_field(response, "service_tier"))
    return {"service_tier": tier} if tier else {}


def is_responses_api(response: object, usage: Fields) -> bool:
    if text_value(get_field(response, "object")) == "response":
        return True
    return not usage.has("prompt_tokens") and usage.has("input_tokens")


def extract(response: object, provider: str = "openai") -> Captured:
    """Usage of a ChatCompletion or a Response (SDK object or JSON body)."""
    if type(response) is dict:
        captured = plain_chat_completion(response, dict.get, _is_dict, provider)
        if captured is not None:
            return captured
    elif type(response) in _SDK_CHAT_COMPLETIONS or _sdk_kind(type(response)) == "ChatCompletion":
        captured = sdk_chat_completion(response, provider)
        if captured is not None:
            return captured
    return extract_fields(response, provider)


def extract_fields(response: object, provider: str = "openai") -> Captured:
    """`extract` by reading every field through `Fields` (any shape; names what is malformed)."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        if text_value(get_field(response, "type")) == "response.done":
            return extract_realtime(response, provider)
        unfinished = _unfinished_response(response, provider)
        if unfinished is not None:
            return unfinished
        raise Malformed("response has no usage")
    usage = Fields(raw_usage, "usage")
    if is_responses_api(response, usage):
        result = responses_usage(usage, billed_tool_calls(response))
        response_id = text_value(get_field(response, "id"))
        cost = charged(raw_usage, provider)
        return Captured(
            result, model_name(response), provider, price_context(response), cost, response_id=response_id
        )
    if usage.has("prompt_tokens", "completion_tokens"):
        result = chat_usage(usage, provider, model_name(response))
    else:
        raise Malformed("usage has neither prompt_tokens (Chat Completions) nor input_tokens (Responses)")
    cost = charged(raw_usage, provider)
    return Captured(result, model_name(response), provider, price_context(response), provider_cost=cost)


_UNFINISHED = ("queued", "in_progress")


def _unfinished_response(response: object, provider: str) -> Captured | None:
    """A background Response still queued or running: no usage yet (recorded once it has finished)."""
    status = text_value(get_field(response, "status"))
    if text_value(get_field(response, "object")) != "response" or status not in _UNFINISHED:
        return None
    return Captured(
        Usage.unknown(f"the background response is {status}: usage is reported when it finishes"),
        model_name(response),
        provider,
        price_context(response),
        response_id=text_value(get_field(response, "id")),
        finished=False,
    )


def _token_counts(usage: Fields) -> dict[str, int]:
    """`input_tokens` and `output_tokens` (both required); `total_tokens`, unused, must still be a count."""
    usage.count("total_tokens")
    return {
        "input_tokens": usage.count("input_tokens", required=True),
        "output_tokens": usage.count("output_tokens", required=True),
    }


# (path under `response.usage`, ((Usage field, count name), ...)) of a realtime `response.done`
_REALTIME_DETAILS = (
    (
        ("input_token_details",),
        (
            ("cache_read_tokens", "cached_tokens"),
            ("input_audio_tokens", "audio_tokens"),
            ("input_image_tokens", "image_tokens"),
        ),
    ),
    (
        ("input_token_details", "cached_tokens_details"),
        (("cache_audio_read_tokens", "audio_tokens"), ("cache_image_read_tokens", "image_tokens")),
    ),
    (("output_token_details",), (("output_audio_tokens", "audio_tokens"),)),
)


def extract_realtime(event: object, provider: str = "openai") -> Captured:
    """A Realtime API `response.done` event (OpenAI, Azure): the usage of that one response.

    `response.usage`: `input_tokens` (all of them, cached included) with `input_token_details`
    (`cached_tokens`, `audio_tokens`, `image_tokens`, `cached_tokens_details.audio_tokens` /
    `.image_tokens`), `output_tokens` with `output_token_details.audio_tokens`; text counts are the rest.
    A response that was cancelled or failed still reports what it used, and is billed for it.
    """
    response = get_field(event, "response")
    if response is None:
        raise Malformed("response.done event has no response")
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        status = text_value(get_field(response, "status")) or "unknown"
        raise Malformed(f"response.done has no response.usage (response status {status})")
    usage = Fields(raw_usage, "response.usage")
    counts = _token_counts(usage)
    for path, names in _REALTIME_DETAILS:
        details: Fields | None = usage
        for step in path:
            details = details.child(step) if details is not None else None
        if details is not None:
            counts.update((key, details.count(name)) for key, name in names)
    model = model_name(response) or model_name(event)
    return Captured(build_usage(**counts), model, provider)


def extract_embeddings(response: object, provider: str = "openai") -> Captured:
    """An embeddings response: `usage.prompt_tokens` (no completion tokens: nothing is generated)."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        raise Malformed("embeddings response has no usage")
    usage = Fields(raw_usage, "usage")
    usage.count("total_tokens")
    result = build_usage(input_tokens=usage.count("prompt_tokens", required=True))
    return Captured(result, model_name(response), provider)


def extract_images(response: object, provider: str = "openai") -> Captured:
    """An Images API response (GPT image models): text and image input tokens, image output tokens."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        raise Malformed("images response has no usage (only GPT image models report it)")
    usage = Fields(raw_usage, "usage")
    usage.count("total_tokens")
    output_tokens = usage.count("output_tokens", required=True)
    counts = {"input_tokens": usage.count("input_tokens", required=True), "output_tokens": output_tokens}
    inputs = usage.child("input_tokens_details")
    if inputs is not None:
        counts["input_image_tokens"] = inputs.count("image_tokens")
    outputs = usage.child("output_tokens_details")
    counts["output_image_tokens"] = outputs.count("image_tokens") if outputs is not None else output_tokens
    return Captured(build_usage(**counts), model_name(response), provider)


def extract_transcription(response: object, provider: str = "openai") -> Captured:
    """A transcription (or its final stream event): token usage, or a duration tokentrail cannot price yet."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        raise Malformed("transcription has no usage (whisper-1 reports none: billed per minute of audio)")
    usage = Fields(raw_usage, "usage")
    kind = text_value(get_field(raw_usage, "type"))
    if kind == "duration":
        seconds = get_field(raw_usage, "seconds")
        raise Malformed(f"transcription billed by duration ({seconds} s of audio), not by tokens")
    counts = _token_counts(usage)
    details = usage.child("input_token_details")
    if details is not None:
        counts["input_audio_tokens"] = details.count("audio_tokens")
    return Captured(build_usage(**counts), model_name(response), provider)


# -- the openai SDK's own ChatCompletion, read by attribute ----------------------------------------------
#
# The instrumented hot path: the SDK's pydantic models keep their fields in `__dict__` (fields the
# class does not declare in `__pydantic_extra__`), so they are read directly, without `Fields`' generic
# mapping/object probing. Any value that is not a plain in-range int (the SDK does not validate
# responses) sends the response down `extract_fields`, which names what is wrong, so both paths
# always agree.

_SDK_TYPES = {
    ("openai.types.chat.chat_completion", "ChatCompletion"): "ChatCompletion",
    ("openai.types.completion_usage", "CompletionUsage"): "CompletionUsage",
    ("openai.types.completion_usage", "PromptTokensDetails"): "PromptTokensDetails",
    ("openai.types.completion_usage", "CompletionTokensDetails"): "CompletionTokensDetails",
}
_sdk_kinds: dict[type, str | None] = {}
_SDK_CHAT_COMPLETIONS: set[type] = set()
_ABSENT: Any = object()


def _sdk_kind(cls: type) -> str | None:
    """Which openai SDK model `cls` is exactly (None for anything else, subclasses included)."""
    kind = _sdk_kinds.get(cls, _ABSENT)
    if kind is _ABSENT:
        kind = _SDK_TYPES.get((cls.__module__, cls.__qualname__))
        if kind is not None and not isinstance(getattr(cls, "model_fields", None), dict):
            kind = None  # not a pydantic model after all
        _sdk_kinds[cls] = kind
        if kind == "ChatCompletion":
            _SDK_CHAT_COMPLETIONS.add(cls)
    return kind  # type: ignore[no-any-return]


def _sdk_field(obj: Any, name: str) -> Any:
    """`getattr(obj, name, None)` for a pydantic model with no properties of that name."""
    value = obj.__dict__.get(name, _ABSENT)
    if value is _ABSENT:
        extra = obj.__pydantic_extra__
        return extra.get(name) if extra else None
    return value


# the counts of a chat `usage`, in the order `plain_chat_counts` gives them
_CHAT_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "reasoning_tokens",
    "output_audio_tokens",
    "output_image_tokens",
)
# (usage field, its SDK model, (position in `_CHAT_COUNTS`, field) of the counts read from it)
_DETAILS = (
    (
        "prompt_tokens_details",
        "PromptTokensDetails",
        ((2, "cached_tokens"), (3, "cache_write_tokens"), (4, "audio_tokens"), (5, "image_tokens")),
    ),
    (
        "completion_tokens_details",
        "CompletionTokensDetails",
        ((6, "reasoning_tokens"), (7, "audio_tokens"), (8, "image_tokens")),
    ),
)
_REASONING = _CHAT_COUNTS.index("reasoning_tokens")
_build_chat_usage = usage_builder(_CHAT_COUNTS, exact_counts=True)


def _is_count(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_COUNT


def _is_dict(value: object, kind: str) -> bool:
    """A `usage` (or details) object of a JSON body, whatever SDK model `kind` would hold it."""
    return type(value) is dict


def _is_sdk(value: object, kind: str) -> bool:
    """Exactly the openai SDK model `kind`."""
    return _sdk_kind(type(value)) == kind


def plain_chat_counts(
    usage: Any,
    field: Callable[[Any, str], Any],
    is_details: Callable[[Any, str], bool],
    provider: str | None,
    model: str | None,
) -> list[int] | None:
    """What `chat_counts` reads (every count of `_CHAT_COUNTS`, 0 when absent) from a `usage` read through
    `field` (a JSON object's `dict.get`, an SDK model's `_sdk_field`), when every value is a plain
    in-range int and every details object is what `is_details` expects; None when a value needs
    `chat_counts` (which names what is wrong)."""
    if provider in ("openrouter", "google"):
        return None  # OpenRouter's server tools' web searches, Gemini's thinking: `chat_counts`
    prompt_tokens = field(usage, "prompt_tokens")
    completion_tokens = field(usage, "completion_tokens")
    total_tokens = field(usage, "total_tokens")
    if not (
        _is_count(prompt_tokens)
        and _is_count(completion_tokens)
        and (total_tokens is None or _is_count(total_tokens))
    ):
        return None
    counts = [prompt_tokens, completion_tokens, 0, 0, 0, 0, 0, 0, 0]
    for name, kind, places in _DETAILS:
        details = field(usage, name)
        if details is None:
            continue
        if not is_details(details, kind):
            return None
        for place, count_name in places:
            value = field(details, count_name)
            if value is not None:
                if not _is_count(value):
                    return None
                counts[place] = value
    reasoning = counts[_REASONING]
    if reasoning and reasoning_outside_completion(
        prompt_tokens, completion_tokens, reasoning, total_tokens, provider, model
    ):
        if completion_tokens + reasoning > MAX_COUNT:
            return None  # `chat_counts` names it
        counts[1] = completion_tokens + reasoning
    return counts


def _chat_usage_of(counts: list[int]) -> Usage:
    """The `Usage` of `plain_chat_counts` (in range already: `build_usage` without its range checks)."""
    try:
        return _build_chat_usage(*counts)
    except InvalidUsageError as exc:
        raise Malformed(f"inconsistent usage: {exc}") from None


def plain_chat_completion(
    response: Any, field: Callable[[Any, str], Any], is_details: Callable[[Any, str], bool], provider: str
) -> Captured | None:
    """`extract` of a chat completion read through `field` (see `plain_chat_counts`): a JSON body or an
    openai SDK `ChatCompletion`; None when a value needs `extract_fields` (or the usage reports a cost
    it reads)."""
    usage = field(response, "usage")
    if (
        usage is None
        or field(response, "object") != "chat.completion"
        or not is_details(usage, "CompletionUsage")
        or provider in REPORTERS
    ):
        return None
    model = text_value(field(response, "model"))
    counts = plain_chat_counts(usage, field, is_details, provider, model)
    if counts is None:
        return None
    tier = text_value(field(response, "service_tier"))
    return new_captured(
        _chat_usage_of(counts), model or None, provider, {"service_tier": tier} if tier else {}
    )


def sdk_chat_completion(response: Any, provider: str) -> Captured | None:
    """`extract` of an openai SDK `ChatCompletion`; None when a value needs `extract_fields`."""
    return plain_chat_completion(response, _sdk_field, _is_sdk, provider)


class ChatStream(StreamAccumulator):
    """Chat Completions chunks: the usage chunk is the last one, and only with `include_usage`.

    Groq's final chunk carries the usage in `x_groq.usage` instead; it is read only while no top-level
    `usage` has been seen, and a top-level one arriving after it replaces it (the same report, never
    added). Each report replaces the one before: hosts that send a running usage on every chunk (xAI)
    are read at their last.
    """

    complete_on_close = True

    def __init__(self, provider: str = "openai") -> None:
        super().__init__(provider)
        self._usage: Usage | None = None
        self._top_level_usage = False  # a top-level `usage` was seen: `x_groq.usage` is not read any more
        self.provider_cost: Decimal | None = None  # the cost the usage read last reports (`_charged`)

    def captured(self) -> Captured:
        captured = super().captured()
        if self.provider_cost is None:  # its default: no copy
            return captured
        return dataclasses.replace(captured, provider_cost=self.provider_cost)

    def _feed(self, event: object) -> None:
        chunk = unwrap_chunk(event)
        self.model = model_name(chunk) or self.model
        self.price_context.update(price_context(chunk))
        raw_usage = get_field(chunk, "usage")
        where = "chunk.usage"
        if raw_usage is None:
            raw_usage = self._groq_usage(chunk)
            if raw_usage is None:
                return
            where = "chunk.x_groq.usage"
        else:
            self._top_level_usage = True
        try:
            self._usage = self._read_usage(Fields(raw_usage, where))
        except Malformed:
            self._usage = None  # a broken latest report must not leave an older one standing as final
            self.provider_cost = None
            raise
        self.provider_cost = charged(raw_usage, self.provider)
        choices = get_field(chunk, "choices")
        if where != "chunk.usage" or not choices:
            # the include_usage chunk (nothing after it but [DONE]), or Groq's final chunk
            self.final = True

    def _groq_usage(self, chunk: object) -> object | None:
        """Groq's `x_groq.usage` (sent only in the final chunk), unless a top-level usage came already."""
        if self._top_level_usage:
            return None
        x_groq = get_field(chunk, "x_groq")
        return get_field(x_groq, "usage") if x_groq is not None else None

    def _read_usage(self, usage: Fields) -> Usage:
        return chat_usage(usage, self.provider, self.model)

    def _seen(self) -> Usage | None:
        return self._usage

    def _missing_hint(self) -> str:
        return "OpenAI-style chat streams report usage only when the request sets stream_options={'include_usage': True}"


def unwrap_chunk(event: object) -> object:
    """The chunk itself: Mistral's SDK wraps each chunk in an event whose `data` is the chunk."""
    if get_field(event, "choices") is None and get_field(event, "usage") is None:
        inner = get_field(event, "data")
        if inner is not None and not isinstance(inner, (str, bytes)):
            return inner
    return event


class ResponsesStream(StreamAccumulator):
    """Responses API events: `response.completed` (or `.incomplete` / `.failed`) carries the usage."""

    def __init__(self, provider: str = "openai") -> None:
        super().__init__(provider)
        self._usage: Usage | None = None
        self.response_id: str | None = None

    def captured(self) -> Captured:
        captured = super().captured()
        return dataclasses.replace(captured, response_id=self.response_id, finished=self.final)

    def _feed(self, event: object) -> None:
        kind = text_value(get_field(event, "type"))
        response = get_field(event, "response")
        if response is None:
            return
        self.response_id = text_value(get_field(response, "id")) or self.response_id
        self.model = model_name(response) or self.model
        self.price_context.update(price_context(response))
        if kind not in _FINAL_RESPONSE_EVENTS:
            return
        raw_usage = get_field(response, "usage")
        if raw_usage is None:
            raise Malformed(f"{kind} event has no response.usage")
        self._usage = responses_usage(Fields(raw_usage, "response.usage"), billed_tool_calls(response))
        self.final = True

    def _seen(self) -> Usage | None:
        return self._usage


class _FinalEventStream(StreamAccumulator):
    """A stream whose last event carries the usage in the shape of the plain response's `usage`."""

    final_types: tuple[str, ...] = ()

    def __init__(self, provider: str = "openai") -> None:
        super().__init__(provider)
        self._usage: Usage | None = None

    @abstractmethod
    def _read(self, event: object) -> Captured:
        """The usage the final event reports."""

    def _feed(self, event: object) -> None:
        if text_value(get_field(event, "type")) in self.final_types:
            self._usage = self._read(event).usage
            self.final = True

    def _seen(self) -> Usage | None:
        return self._usage


class TranscriptionStream(_FinalEventStream):
    """Streamed transcriptions: `transcript.text.done` carries the usage."""

    final_types = ("transcript.text.done",)

    def _read(self, event: object) -> Captured:
        return extract_transcription(event, self.provider)


class ImageStream(_FinalEventStream):
    """Streamed image generation or edits: the `.completed` event carries the usage."""

    final_types = ("image_generation.completed", "image_edit.completed")

    def _read(self, event: object) -> Captured:
        return extract_images(event, self.provider)


def extract_speech_usage(event: object, provider: str = "openai") -> Captured:
    """The usage of a `speech.audio.done` event: text input tokens, audio output tokens."""
    raw_usage = get_field(event, "usage")
    if raw_usage is None:
        raise Malformed("speech.audio.done has no usage")
    usage = Fields(raw_usage, "usage")
    usage.count("total_tokens")
    output_tokens = usage.count("output_tokens", required=True)
    result = build_usage(
        input_tokens=usage.count("input_tokens", required=True),
        output_tokens=output_tokens,
        output_audio_tokens=output_tokens,
    )
    return Captured(result, None, provider)


class SpeechStream(_FinalEventStream):
    """Speech as server-sent events (`stream_format="sse"`): `speech.audio.done` carries the usage."""

    final_types = ("speech.audio.done",)

    def _read(self, event: object) -> Captured:
        return extract_speech_usage(event, self.provider)


def extract_speech(body: object, provider: str = "openai") -> Captured:
    """A whole speech response body read as server-sent events (the SDK hands it back as bytes)."""
    content = body if isinstance(body, bytes) else get_field(body, "content")
    if not isinstance(content, bytes):
        raise Malformed("speech response has no body to read")
    stream = SpeechStream(provider)
    for block in content.replace(b"\r\n", b"\n").split(b"\n\n"):
        if b'"usage"' in block:
            stream.feed(block)
    stream.close()
    captured = stream.captured()
    if captured.usage.status is not UsageStatus.COMPLETE:
        raise Malformed(captured.usage.reason or "speech stream reported no usage")
    return captured
