"""Small pieces of the wire formats every mock route shares: ids, token counts, text chunks, SSE frames."""

from __future__ import annotations

import json
import uuid
from typing import Any

__all__ = ["count", "new_id", "sse", "words"]


def new_id(prefix: str) -> str:
    """A response id in a provider's format: the prefix, then 32 hex digits."""
    return prefix + uuid.uuid4().hex


def count(text: str) -> int:
    """The mock's deterministic token count: one per 4 characters (at least one for any text)."""
    return max(1, (len(text) + 3) // 4) if text else 0


def words(text: str) -> list[str]:
    """`text` in the word-sized pieces a stream sends."""
    parts = text.split(" ")
    return [w + (" " if i < len(parts) - 1 else "") for i, w in enumerate(parts)]


def sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    """One server-sent event (with its `event:` line when the API names its events)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload)}\n\n".encode()
