"""Patch table for `litellm`: the public `litellm.completion` and `litellm.acompletion` functions.

LiteLLM calls many providers through their own SDKs (OpenAI-compatible ones through the `openai`
SDK); while a tracked LiteLLM call runs, those inner SDK calls pass untracked, so the call is recorded
once, here, with LiteLLM's normalized usage, the provider that served it and LiteLLM's own
`response_cost` (kept as the provider-reported cost). `completion(..., acompletion=True)` passes
through (the SDK call it makes is tracked where it happens).

The functions are replaced on the `litellm` module: code that ran `from litellm import completion`
before `instrument()` keeps the original function.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tokentrail.adapters._instrument_target import Request, Target, given

__all__ = ["CLIENT_MODULES", "ROOT", "TARGETS", "WRAP_PATHS"]

logger = logging.getLogger("tokentrail.adapters")


def _reports_stream_usage(model: str | None, kwargs: dict[str, Any]) -> bool:
    """Whether LiteLLM accepts `stream_options` for this model's provider (else it may refuse the call)."""
    if not model:
        return False
    try:
        import litellm

        provider = kwargs.get("custom_llm_provider")
        if not isinstance(provider, str):
            _, provider, _, _ = litellm.get_llm_provider(model=model, api_base=kwargs.get("api_base"))
        supported = litellm.get_supported_openai_params(model=model, custom_llm_provider=provider) or []
    except Exception:
        logger.debug("could not tell whether LiteLLM streams usage for %s", model, exc_info=True)
        return False
    return "stream_options" in supported


@dataclass(frozen=True)
class _CompletionTarget(Target):
    """`litellm.completion` / `litellm.acompletion`: OpenAI-shaped chat over any provider."""

    model_position: int | None = 0
    adapter: str | None = "litellm"

    def request(
        self, resource: Any, args: tuple[Any, ...], kwargs: dict[str, Any], settings: Any
    ) -> Request | None:
        if kwargs.get("acompletion") is True:
            return None
        request = super().request(resource, args, kwargs, settings)
        if (
            request is not None
            and request.streaming
            and settings.include_stream_usage
            and not given(kwargs.get("stream_options"))
            and _reports_stream_usage(request.model, kwargs)
        ):
            request.kwargs = {**kwargs, "stream_options": {"include_usage": True}}
        return request

    def is_content(self, event: object) -> bool:
        for choice in getattr(event, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            if getattr(delta, "content", None) or getattr(delta, "tool_calls", None):
                return True
        return False


TARGETS: tuple[Target, ...] = (
    _CompletionTarget("litellm", "litellm", "", "completion", "litellm"),
    _CompletionTarget("litellm", "litellm", "", "acompletion", "litellm"),
)
ROOT = "litellm"  # the package whose presence means the SDK is installed
CLIENT_MODULES: tuple[str, ...] = ()  # no client objects: `wrap()` does not apply
WRAP_PATHS: tuple[tuple[str, ...], ...] = ()
