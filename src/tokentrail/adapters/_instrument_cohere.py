"""Patch table for `cohere` v2 (`ClientV2`, `AsyncClientV2`: chat and chat_stream).

`ClientV2` copies its bound `chat` / `chat_stream` onto each client object when it is built (to warn
about experimental arguments, on by default), so a client built before `instrument()` keeps the
unpatched methods: call `instrument()` first, or `wrap()` such a client.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokentrail.adapters._instrument_target import Target

__all__ = ["CLIENT_MODULES", "ROOT", "TARGETS", "WRAP_PATHS"]

_CONTENT_EVENTS = frozenset({"content-delta", "tool-plan-delta", "tool-call-start", "tool-call-delta"})


@dataclass(frozen=True)
class _ChatTarget(Target):
    adapter: str | None = "cohere"

    def is_content(self, event: object) -> bool:
        return getattr(event, "type", None) in _CONTENT_EVENTS


_V2 = "cohere.v2.client"

TARGETS: tuple[Target, ...] = tuple(
    _ChatTarget("cohere", _V2, cls, attr, "cohere", streaming=streaming)
    for cls in ("V2Client", "AsyncV2Client")
    for attr, streaming in (("chat", "never"), ("chat_stream", "always"))
)
ROOT = "cohere"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("cohere",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = ((),)
