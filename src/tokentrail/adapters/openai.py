"""OpenAI (and Azure OpenAI, same shapes): Chat Completions and the Responses API.

Chat Completions `usage`: `prompt_tokens` already counts cached tokens, so it is `input_tokens` as is;
`prompt_tokens_details.cached_tokens` → cache reads, `.cache_write_tokens` → cache writes,
`.audio_tokens` / `.image_tokens` → input media; `completion_tokens` counts reasoning, so it is
`output_tokens` as is; `completion_tokens_details.reasoning_tokens` → reasoning, `.audio_tokens` → output
audio. Responses `usage`: `input_tokens` (+ `input_tokens_details.cached_tokens` / `cache_write_tokens`),
`output_tokens` (+ `output_tokens_details.reasoning_tokens`); each `web_search_call` output item that ran
a search counts as one web search. The response's `service_tier` is the tier that actually served it.

Streaming: Chat Completions reports usage only in a last chunk with no choices, and only when the
request set `stream_options={"include_usage": True}`; the Responses API reports it in the
`response.completed` (or `.incomplete` / `.failed`) event.
"""

from __future__ import annotations

from tokentrail._types import Usage
from tokentrail.adapters._base import (
    Captured,
    Fields,
    Malformed,
    StreamAccumulator,
    build_usage,
    get_field,
    model_name,
    text_value,
)

__all__ = [
    "ChatStream",
    "ResponsesStream",
    "chat_usage",
    "extract",
    "price_context",
    "responses_usage",
]

_FINAL_RESPONSE_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def chat_usage(usage: Fields) -> Usage:
    """A Chat Completions `usage` object (also Mistral's and LiteLLM's) in the one convention."""
    return build_usage(**chat_counts(usage))


def chat_counts(usage: Fields) -> dict[str, int]:
    counts = {
        "input_tokens": usage.count("prompt_tokens", required=True),
        "output_tokens": usage.count("completion_tokens", required=True),
    }
    usage.count("total_tokens")  # not used, but a malformed total means a malformed payload
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
    return counts


def responses_usage(usage: Fields, web_searches: int = 0) -> Usage:
    """A Responses API `usage` object in the one convention."""
    counts = {
        "input_tokens": usage.count("input_tokens", required=True),
        "output_tokens": usage.count("output_tokens", required=True),
        "web_searches": web_searches,
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


def web_search_calls(response: object) -> int:
    """Web search tool calls that ran a search, from a Responses API `output` list."""
    output = get_field(response, "output")
    if not isinstance(output, (list, tuple)):
        return 0
    searches = 0
    for item in output:
        if text_value(get_field(item, "type")) != "web_search_call":
            continue
        action = get_field(item, "action")
        kind = text_value(get_field(action, "type")) if action is not None else None
        if kind in (None, "search"):
            searches += 1
    return searches


def price_context(response: object) -> dict[str, str]:
    tier = text_value(get_field(response, "service_tier"))
    return {"service_tier": tier} if tier else {}


def is_responses_api(response: object, usage: Fields) -> bool:
    if text_value(get_field(response, "object")) == "response":
        return True
    return not usage.has("prompt_tokens") and usage.has("input_tokens")


def extract(response: object, provider: str = "openai") -> Captured:
    """Usage of a ChatCompletion or a Response (SDK object or JSON body)."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        raise Malformed("response has no usage")
    usage = Fields(raw_usage, "usage")
    if is_responses_api(response, usage):
        result = responses_usage(usage, web_search_calls(response))
    elif usage.has("prompt_tokens", "completion_tokens"):
        result = chat_usage(usage)
    else:
        raise Malformed("usage has neither prompt_tokens (Chat Completions) nor input_tokens (Responses)")
    return Captured(result, model_name(response), provider, price_context(response))


class ChatStream(StreamAccumulator):
    """Chat Completions chunks: the usage chunk is the last one, and only with `include_usage`."""

    complete_on_close = True

    def __init__(self, provider: str = "openai") -> None:
        super().__init__(provider)
        self._usage: Usage | None = None

    def _feed(self, event: object) -> None:
        chunk = unwrap_chunk(event)
        self.model = model_name(chunk) or self.model
        self.price_context.update(price_context(chunk))
        raw_usage = get_field(chunk, "usage")
        if raw_usage is None:
            return
        try:
            self._usage = self._read_usage(Fields(raw_usage, "chunk.usage"))
        except Malformed:
            self._usage = None  # a broken latest report must not leave an older one standing as final
            raise
        choices = get_field(chunk, "choices")
        if not choices:  # the include_usage chunk: nothing after it but [DONE]
            self.final = True

    def _read_usage(self, usage: Fields) -> Usage:
        return chat_usage(usage)

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

    def _feed(self, event: object) -> None:
        kind = text_value(get_field(event, "type"))
        response = get_field(event, "response")
        if response is None:
            return
        self.model = model_name(response) or self.model
        self.price_context.update(price_context(response))
        if kind not in _FINAL_RESPONSE_EVENTS:
            return
        raw_usage = get_field(response, "usage")
        if raw_usage is None:
            raise Malformed(f"{kind} event has no response.usage")
        self._usage = responses_usage(Fields(raw_usage, "response.usage"), web_search_calls(response))
        self.final = True

    def _seen(self) -> Usage | None:
        return self._usage
