"""Patch table for `openai` (OpenAI, AsyncOpenAI, AzureOpenAI, AsyncAzureOpenAI)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokentrail.adapters._instrument_target import Request, Target, given

__all__ = ["CLIENT_MODULES", "ROOT", "TARGETS", "WRAP_PATHS", "StainlessTarget"]


def _raw_response(kwargs: Mapping[str, Any]) -> bool:
    """Raw/streaming-response requests (`with_raw_response`) return HTTP wrappers: pass them through."""
    headers = kwargs.get("extra_headers")
    if not isinstance(headers, Mapping):
        return False
    return any(str(key).lower() == "x-stainless-raw-response" for key in headers)


@dataclass(frozen=True)
class StainlessTarget(Target):
    """A method of the Stainless-generated SDKs (openai, anthropic): raw-response calls pass through."""

    def request(
        self, resource: Any, args: tuple[Any, ...], kwargs: dict[str, Any], settings: Any
    ) -> Request | None:
        if kwargs.get("extra_headers") is not None and _raw_response(kwargs):
            return None
        return super().request(resource, args, kwargs, settings)


@dataclass(frozen=True)
class _OpenAITarget(StainlessTarget):
    adapter: str | None = "openai"

    def provider_of(self, resource: Any) -> str:
        return "azure" if "Azure" in type(getattr(resource, "_client", None)).__name__ else "openai"


@dataclass(frozen=True)
class _ChatTarget(_OpenAITarget):
    """Chat completions: streamed requests ask for the final usage chunk unless told not to."""

    def request(
        self, resource: Any, args: tuple[Any, ...], kwargs: dict[str, Any], settings: Any
    ) -> Request | None:
        request = super().request(resource, args, kwargs, settings)
        if (
            request is not None
            and request.streaming
            and settings.include_stream_usage
            and not given(kwargs.get("stream_options"))
        ):
            request.kwargs = {**kwargs, "stream_options": {"include_usage": True}}
        return request

    def is_content(self, event: object) -> bool:
        for choice in getattr(event, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            if getattr(delta, "content", None) or getattr(delta, "tool_calls", None):
                return True
        return False


@dataclass(frozen=True)
class _ResponsesTarget(_OpenAITarget):
    def is_content(self, event: object) -> bool:
        kind = getattr(event, "type", None)
        return isinstance(kind, str) and kind.endswith(".delta")


_CHAT = "openai.resources.chat.completions"
_RESPONSES = "openai.resources.responses"

TARGETS: tuple[Target, ...] = (
    _ChatTarget("openai", _CHAT, "Completions", "create", "openai"),
    _ChatTarget("openai", _CHAT, "AsyncCompletions", "create", "openai"),
    _ResponsesTarget("openai", _RESPONSES, "Responses", "create", "openai"),
    _ResponsesTarget("openai", _RESPONSES, "AsyncResponses", "create", "openai"),
    _ResponsesTarget("openai", _RESPONSES, "Responses", "stream", "openai", streaming="helper"),
    _ResponsesTarget("openai", _RESPONSES, "AsyncResponses", "stream", "openai", streaming="helper"),
)
ROOT = "openai"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("openai",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = (("chat", "completions"), ("responses",))
