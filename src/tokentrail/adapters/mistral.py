"""Mistral chat completions: an OpenAI-shaped `usage` (`prompt_tokens`, `completion_tokens`, optional
`prompt_tokens_details.cached_tokens`), read exactly as OpenAI's.

Mistral streams always end with a chunk that carries `usage`; the `mistralai` SDK wraps each chunk in an
event whose `data` is the chunk, which the stream accumulator unwraps.
"""

from __future__ import annotations

from tokentrail.adapters import openai
from tokentrail.adapters._base import Captured, Fields, Malformed, get_field, model_name

__all__ = ["ChatStream", "extract"]

PROVIDER = "mistral"

# Model-name prefixes of Mistral's own models, used to tell a Mistral body from an OpenAI one.
MODEL_PREFIXES = (
    "mistral",
    "open-mistral",
    "open-mixtral",
    "mixtral",
    "codestral",
    "ministral",
    "magistral",
    "pixtral",
    "devstral",
    "voxtral",
)


def extract(response: object, provider: str = PROVIDER) -> Captured:
    """Usage of a chat completion response (SDK object or JSON body)."""
    raw_usage = get_field(response, "usage")
    if raw_usage is None:
        raise Malformed("response has no usage")
    usage = openai.chat_usage(Fields(raw_usage, "usage"))
    return Captured(usage, model_name(response), provider, {})


class ChatStream(openai.ChatStream):
    """Mistral chat stream chunks (or SDK events wrapping them): the last chunk carries the usage."""

    def __init__(self, provider: str = PROVIDER) -> None:
        super().__init__(provider)

    def _missing_hint(self) -> str:
        return ""
