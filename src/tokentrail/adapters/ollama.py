"""Ollama (`/api/chat`, `/api/generate`): `prompt_eval_count` prompt tokens, `eval_count` generated tokens.

Counts arrive on the final object (`done: true`), streamed or not. `prompt_eval_count` is the whole prompt,
KV-cache hits included (Ollama made it so in PR #5371, 2024); older versions left it out when the prompt was
cached, and such a response is `unknown` rather than a made-up 0. Ollama's OpenAI-compatible `/v1` endpoints
return OpenAI shapes and are read by the OpenAI adapter.

Embeddings: `/api/embed` reports `prompt_eval_count` (the input); the legacy `/api/embeddings` reports no
counts, so its calls are `unknown` (never 0).

System One (`/v1/systemone`, `Client.systemone`): scores questions about a state in one forward pass and
reports `usage.input_tokens` / `usage.output_tokens` (an answer per question, no text); it does not stream.
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
)

__all__ = ["ChatStream", "embed_usage", "extract", "final_usage", "systemone_usage"]

PROVIDER = "ollama"


def final_usage(response: object) -> Usage:
    """The usage of a final (`done: true`) Ollama object."""
    fields = Fields(response, "response")
    done = get_field(response, "done")
    if done is not True:
        raise Malformed(f"response is not final (done is {done!r}); Ollama reports counts on the last object")
    output = fields.count("eval_count", required=True)
    if not fields.has("prompt_eval_count"):
        raise Malformed(
            "response.prompt_eval_count is missing (Ollama before mid-2024 left it out when the prompt was cached)"
        )
    return build_usage(input_tokens=fields.count("prompt_eval_count"), output_tokens=output)


def embed_usage(response: object) -> Usage:
    """The input an EmbedResponse reports; the legacy EmbeddingsResponse reports none."""
    fields = Fields(response, "response")
    if fields.has("prompt_eval_count"):
        return build_usage(input_tokens=fields.count("prompt_eval_count"))
    if get_field(response, "embedding") is not None:
        return Usage.unknown("Ollama's legacy /api/embeddings reports no token counts (use embed())")
    return Usage.unknown("Ollama /api/embed response has no prompt_eval_count")


def systemone_usage(response: object) -> Usage:
    """The `usage` a SystemOneResponse reports."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        raise Malformed("System One response has no usage")
    usage = Fields(raw_usage, "usage")
    return build_usage(
        input_tokens=usage.count("input_tokens", required=True),
        output_tokens=usage.count("output_tokens", required=True),
    )


def extract(response: object, provider: str = PROVIDER) -> Captured:
    """Usage of a ChatResponse / GenerateResponse / EmbedResponse / SystemOneResponse (SDK object or JSON)."""
    if get_field(response, "answers") is not None:
        return Captured(systemone_usage(response), model_name(response), provider, {})
    if get_field(response, "embeddings") is not None or get_field(response, "embedding") is not None:
        return Captured(embed_usage(response), model_name(response), provider, {})
    return Captured(final_usage(response), model_name(response), provider, {})


class ChatStream(StreamAccumulator):
    """JSON-lines chunks: the `done: true` chunk carries the counts."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)
        self._usage: Usage | None = None

    def _feed(self, event: object) -> None:
        self.model = model_name(event) or self.model
        if get_field(event, "done") is True:
            self._usage = final_usage(event)
            self.final = True

    def _seen(self) -> Usage | None:
        return self._usage
