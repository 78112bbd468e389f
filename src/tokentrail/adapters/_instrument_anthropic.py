"""Patch table for `anthropic` (Anthropic, AsyncAnthropic)."""

from __future__ import annotations

from dataclasses import dataclass

from tokentrail.adapters._instrument_openai import StainlessTarget
from tokentrail.adapters._instrument_target import Target

__all__ = ["CLIENT_MODULES", "ROOT", "TARGETS", "WRAP_PATHS"]


@dataclass(frozen=True)
class _MessagesTarget(StainlessTarget):
    adapter: str | None = "anthropic"

    def is_content(self, event: object) -> bool:
        return getattr(event, "type", None) == "content_block_delta"


_MESSAGES = "anthropic.resources.messages"

TARGETS: tuple[Target, ...] = (
    _MessagesTarget("anthropic", _MESSAGES, "Messages", "create", "anthropic"),
    _MessagesTarget("anthropic", _MESSAGES, "AsyncMessages", "create", "anthropic"),
    _MessagesTarget("anthropic", _MESSAGES, "Messages", "stream", "anthropic", streaming="helper"),
    _MessagesTarget("anthropic", _MESSAGES, "AsyncMessages", "stream", "anthropic", streaming="helper"),
)
ROOT = "anthropic"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("anthropic",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = (("messages",),)
