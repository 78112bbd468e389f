"""Patch table for `mistralai` (`Mistral().chat`: complete, stream, complete_async, stream_async)."""

from __future__ import annotations

from dataclasses import dataclass

from tokentrail.adapters._instrument_target import Target

__all__ = ["CLIENT_MODULES", "ROOT", "TARGETS", "WRAP_PATHS"]


@dataclass(frozen=True)
class _ChatTarget(Target):
    adapter: str | None = "mistral"

    def is_content(self, event: object) -> bool:
        chunk = getattr(event, "data", event)  # the SDK wraps each chunk in an event
        for choice in getattr(chunk, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            if getattr(delta, "content", None) or getattr(delta, "tool_calls", None):
                return True
        return False


_CHAT = "mistralai.client.chat"
_STREAMING = {"complete": "never", "complete_async": "never", "stream": "always", "stream_async": "always"}

TARGETS: tuple[Target, ...] = tuple(
    _ChatTarget("mistralai", _CHAT, "Chat", attr, "mistral", streaming=streaming)
    for attr, streaming in _STREAMING.items()
)
ROOT = "mistralai.client"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("mistralai",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = (("chat",),)
