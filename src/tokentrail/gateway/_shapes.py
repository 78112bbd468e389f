"""Errors the gateway answers itself, in the shape of the provider API the client speaks, so each SDK
raises its usual exception (`RateLimitError` for 429, `APIStatusError` subclasses for the rest).

Shapes, as the providers document them:
- OpenAI: `{"error": {"message", "type", "param", "code"}}`
  (https://platform.openai.com/docs/guides/error-codes)
- Anthropic: `{"type": "error", "error": {"type", "message"}}`
  (https://docs.anthropic.com/en/api/errors)
- Gemini: `{"error": {"code", "message", "status"}}` (https://ai.google.dev/gemini-api/docs/troubleshooting)
"""

from __future__ import annotations

import json

__all__ = ["ErrorReply", "error_reply"]

# status → (OpenAI type, Anthropic type, Gemini status)
_KINDS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT"),
    401: ("invalid_request_error", "authentication_error", "UNAUTHENTICATED"),
    404: ("invalid_request_error", "not_found_error", "NOT_FOUND"),
    413: ("invalid_request_error", "request_too_large", "INVALID_ARGUMENT"),
    429: ("budget_exceeded", "rate_limit_error", "RESOURCE_EXHAUSTED"),
    502: ("api_error", "api_error", "UNAVAILABLE"),
    503: ("api_error", "overloaded_error", "UNAVAILABLE"),
    504: ("timeout", "timeout_error", "DEADLINE_EXCEEDED"),
}


class ErrorReply:
    """A complete error response: status, headers and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def error_reply(
    api: str, status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
) -> ErrorReply:
    """The error `status` with `message` as provider `api` ("openai", "anthropic", "gemini") answers it."""
    openai_type, anthropic_type, gemini_status = _KINDS.get(status, ("api_error", "api_error", "UNKNOWN"))
    payload: dict[str, object]
    if api == "anthropic":
        payload = {"type": "error", "error": {"type": anthropic_type, "message": message}}
    elif api == "gemini":
        payload = {"error": {"code": status, "message": message, "status": gemini_status}}
    else:
        payload = {"error": {"message": message, "type": openai_type, "param": None, "code": code}}
    body = json.dumps(payload).encode()
    extra = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
    ]
    return ErrorReply(
        status,
        [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra],
        body,
    )
