"""Google Gemini (Gemini API and Vertex AI): `usageMetadata` in JSON, `usage_metadata` in the SDKs.

`promptTokenCount` counts the whole prompt, cached content included; tool-use prompts
(`toolUsePromptTokenCount`) are counted on top of it, as Google bills them as input.
`cachedContentTokenCount` → cache reads. Thinking is reported apart from the answer, so
`output_tokens = candidatesTokenCount + thoughtsTokenCount` and `thoughtsTokenCount` is the reasoning
share. Modality breakdowns (`promptTokensDetails`, `cacheTokensDetails`, `candidatesTokensDetails`,
`toolUsePromptTokensDetails`: lists of {modality, tokenCount}) give the audio, image (documents are
billed as images) and video counts. Proto3 JSON leaves out zero counts, so an absent count is 0.
The Live API's `UsageMetadata` names the generated tokens `responseTokenCount` / `responseTokensDetails`
(https://ai.google.dev/api/live#UsageMetadata); they are read as the candidates' counts.

Grounding with Google Search is billed apart from the tokens, and counted as `web_searches` from the
candidates' `groundingMetadata.webSearchQueries`: Gemini 3 and later bill each search query run (the unique
non-empty ones: "we ignore the empty web search queries when counting unique queries"), Gemini 1.x and 2.x
the grounded prompt, once however many queries it ran (https://ai.google.dev/gemini-api/docs/pricing, the
catalog's $14 and $35 per 1k). genai-prices reads no grounding.

Streaming: every chunk carries the usage *so far*; the last chunk's usage is the call's usage.

Live API (`client.aio.live.connect`, a WebSocket session): a server message may carry `usageMetadata`
beside its content ("Server messages may have a usageMetadata field but will otherwise include exactly one of
the other fields", https://ai.google.dev/api/live#BidiGenerateContentServerMessage). It reports the model
response(s) of one turn, not the session so far: each turn's `promptTokenCount` counts the session's context
again, which is what Google bills per turn (three-turn probe of the live models, pydantic/pydantic-ai#7269:
prompt 143, 181, 224 — growing with the context, not summing). `LiveTurn` reads one turn's messages.

Embeddings (`embed_content`): the Gemini API's batchEmbedContents may carry `usageMetadata.promptTokenCount`;
Vertex reports a `statistics.token_count` per embedding (their sum is the input) and
`metadata.billableCharacterCount`. A response with neither token count is `unknown` (never 0), its reason
naming the billable characters when Vertex gave them.
"""

from __future__ import annotations

import dataclasses

from tokentrail._types import Usage
from tokentrail.adapters._base import (
    Captured,
    Fields,
    Malformed,
    StreamAccumulator,
    as_count,
    build_usage,
    get_field,
    model_name,
    text_value,
)

__all__ = [
    "GenerateContentStream",
    "LiveTurn",
    "embed_usage",
    "extract",
    "grounding_searches",
    "metadata_usage",
    "search_queries",
    "usage_metadata",
]

_IMAGE_MODALITIES = ("IMAGE", "DOCUMENT")


def usage_metadata(response: object) -> object:
    found = get_field(response, "usageMetadata")
    return found if found is not None else get_field(response, "usage_metadata")


def _by_modality(usage: Fields, *names: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for entry in usage.records(*names):
        modality = (entry.text("modality") or "").upper()
        totals[modality] = totals.get(modality, 0) + entry.count("tokenCount", "token_count")
    return totals


def metadata_usage(usage: Fields, web_searches: int = 0) -> Usage:
    """A `usageMetadata` object in the one convention (with the grounding searches `grounding_searches`
    counted)."""
    prompt = usage.count("promptTokenCount", "prompt_token_count", required=True)
    candidates = usage.count(
        "candidatesTokenCount", "candidates_token_count", "responseTokenCount", "response_token_count"
    )
    thoughts = usage.count("thoughtsTokenCount", "thoughts_token_count")
    tool_prompt = usage.count("toolUsePromptTokenCount", "tool_use_prompt_token_count")
    cached = usage.count("cachedContentTokenCount", "cached_content_token_count")
    usage.count("totalTokenCount", "total_token_count")
    inputs = _by_modality(usage, "promptTokensDetails", "prompt_tokens_details")
    tools = _by_modality(usage, "toolUsePromptTokensDetails", "tool_use_prompt_tokens_details")
    cache = _by_modality(usage, "cacheTokensDetails", "cache_tokens_details")
    outputs = _by_modality(
        usage,
        "candidatesTokensDetails",
        "candidates_tokens_details",
        "responseTokensDetails",
        "response_tokens_details",
    )

    def media(totals: dict[str, int], *modalities: str) -> int:
        return sum(totals.get(m, 0) for m in modalities)

    return build_usage(
        input_tokens=prompt + tool_prompt,
        output_tokens=candidates + thoughts,
        cache_read_tokens=cached,
        reasoning_tokens=thoughts,
        input_audio_tokens=media(inputs, "AUDIO") + media(tools, "AUDIO"),
        input_image_tokens=media(inputs, *_IMAGE_MODALITIES) + media(tools, *_IMAGE_MODALITIES),
        input_video_tokens=media(inputs, "VIDEO") + media(tools, "VIDEO"),
        cache_audio_read_tokens=media(cache, "AUDIO"),
        cache_image_read_tokens=media(cache, *_IMAGE_MODALITIES),
        output_audio_tokens=media(outputs, "AUDIO"),
        output_image_tokens=media(outputs, *_IMAGE_MODALITIES),
        output_video_tokens=media(outputs, "VIDEO"),
        web_searches=web_searches,
    )


def search_queries(response: object) -> set[str]:
    """The non-empty Google Search queries a response's candidates ran (`groundingMetadata`)."""
    candidates = get_field(response, "candidates")
    queries: set[str] = set()
    if not isinstance(candidates, (list, tuple)):
        return queries
    for candidate in candidates:
        grounding = get_field(candidate, "groundingMetadata")
        if grounding is None:
            grounding = get_field(candidate, "grounding_metadata")
        if grounding is None:
            continue
        found = get_field(grounding, "webSearchQueries")
        if found is None:
            found = get_field(grounding, "web_search_queries")
        if isinstance(found, (list, tuple)):
            queries.update(query for query in found if isinstance(query, str) and query)
    return queries


def grounding_searches(queries: set[str], model: str | None) -> int:
    """The grounding searches Google bills for a call that ran `queries` on `model` (see the module)."""
    if not queries:
        return 0
    name = (model or "").rsplit("/", 1)[-1]
    return 1 if name.startswith(_PER_PROMPT) else len(queries)


_PER_PROMPT = ("gemini-1", "gemini-2")  # billed per grounded prompt, not per query


def response_model(response: object) -> str | None:
    return model_name(response, "modelVersion", "model_version", "model")


def embed_usage(response: object) -> Usage:
    """The input tokens an EmbedContentResponse reports (prompt count, else the per-embedding counts)."""
    raw = usage_metadata(response)
    if raw is not None:
        fields = Fields(raw, "usageMetadata")
        return build_usage(input_tokens=fields.count("promptTokenCount", "prompt_token_count", required=True))
    embeddings = get_field(response, "embeddings")
    counts = [get_field(get_field(e, "statistics"), "token_count") for e in embeddings or ()]
    if counts and all(c is not None for c in counts):
        return build_usage(
            input_tokens=sum(as_count(c, "embeddings[].statistics.token_count") for c in counts)
        )
    metadata = get_field(response, "metadata")
    characters = get_field(metadata, "billable_character_count") or get_field(
        metadata, "billableCharacterCount"
    )
    if characters is not None:
        return Usage.unknown(
            f"embed_content reported {characters} billable characters and no token count; "
            "tokentrail.Usage counts tokens"
        )
    return Usage.unknown("embed_content response reports no usage (the Gemini API sends none for this model)")


def extract(response: object, provider: str = "google") -> Captured:
    """Usage of a GenerateContentResponse or an EmbedContentResponse (SDK object or JSON body)."""
    raw = usage_metadata(response)
    if get_field(response, "embeddings") is not None:
        return Captured(embed_usage(response), response_model(response), provider, {})
    if raw is None:
        raise Malformed("response has no usageMetadata")
    model = response_model(response)
    searches = grounding_searches(search_queries(response), model)
    return Captured(metadata_usage(Fields(raw, "usageMetadata"), searches), model, provider, {})


def _finished(chunk: object) -> bool:
    candidates = get_field(chunk, "candidates")
    if not isinstance(candidates, (list, tuple)):
        return False
    for candidate in candidates:
        reason = text_value(get_field(candidate, "finishReason")) or text_value(
            get_field(candidate, "finish_reason")
        )
        if reason and reason != "FINISH_REASON_UNSPECIFIED":
            return True
    return False


class GenerateContentStream(StreamAccumulator):
    """streamGenerateContent chunks: usage is cumulative, so the last one seen is the usage."""

    complete_on_close = True

    def __init__(self, provider: str = "google") -> None:
        super().__init__(provider)
        self._usage: Usage | None = None
        self._queries: set[str] = set()  # the grounding queries of every chunk so far

    def _feed(self, event: object) -> None:
        self.model = response_model(event) or self.model
        self._queries |= search_queries(event)
        raw = usage_metadata(event)
        self.complete_on_close = raw is not None  # a later chunk without usage leaves older counts stale
        if raw is not None:
            try:
                self._usage = metadata_usage(Fields(raw, "chunk.usageMetadata"))
            except Malformed:
                self._usage = None  # a broken latest report must not leave an older one standing as final
                raise
        if raw is not None and _finished(event):
            self.final = True

    def _seen(self) -> Usage | None:
        searches = grounding_searches(self._queries, self.model)
        if self._usage is None or not searches:
            return self._usage
        return dataclasses.replace(self._usage, web_searches=searches)


class LiveTurn(StreamAccumulator):
    """The server messages of one Live API model turn: the `usageMetadata` one of them carries is the turn's
    usage, final when it arrives. A turn that ends without it (the session closed first, or the next turn
    began) is `unknown`, its reason saying which (`ending`)."""

    def __init__(self, provider: str = "google") -> None:
        super().__init__(provider)
        self._usage: Usage | None = None
        self.ending: str | None = None  # how the turn ended without its usage, when it did

    def _feed(self, event: object) -> None:
        raw = usage_metadata(event)
        if raw is not None:
            self._usage = None
            self._usage = metadata_usage(Fields(raw, "message.usageMetadata"))
            self.final = True

    def _seen(self) -> Usage | None:
        return self._usage

    def _where(self) -> str:
        ending = f" ({self.ending})" if self.ending else ""
        return f"Live API turn ended after {self.events} server messages{ending}"
