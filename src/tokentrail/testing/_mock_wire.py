"""Small pieces of the wire formats every mock route shares: ids, token counts, text chunks, SSE frames,
JSON answers."""

from __future__ import annotations

import json
import uuid
from typing import Any

__all__ = ["count", "new_id", "public", "sse", "words", "write_json"]


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


def public(value: Any) -> Any:
    """What is served: a mock's own bookkeeping (`_` keys) left out."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def write_json(handler: Any, status: int, payload: object) -> None:
    """Answer on `handler` (a mock's request handler) with `payload` as JSON, its bookkeeping left out."""
    data = json.dumps(public(payload)).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
