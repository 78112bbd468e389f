"""Which provider API a gateway request speaks: the route table, matched on the request path.

    /v1/chat/completions, /v1/responses, /v1/embeddings        OpenAI (and OpenAI-compatible hosts)
    /v1/messages                                                Anthropic
    /v1beta/models/{model}:generateContent                      Gemini (also /v1/models/…)
    /v1beta/models/{model}:streamGenerateContent?alt=sse

A first path segment naming a configured upstream picks it (`/groq/v1/chat/completions` goes to the
upstream named "groq" as `/v1/chat/completions`); otherwise the `X-Tokentrail-Upstream` header does, and
without either the route's own provider (openai, anthropic, google) answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from tokentrail.gateway._events import LastEvent

__all__ = ["ROUTES", "Match", "Route", "match"]


@dataclass(frozen=True, slots=True)
class Route:
    """One provider endpoint the gateway forwards and records."""

    name: str  # "openai.chat", "anthropic.messages", "gemini.stream", …
    api: str  # "openai" | "anthropic" | "gemini": the upstream family, its auth header and error shape
    adapter: str  # the `tokentrail.adapters` reader of a JSON response ("module" or "module:function")
    stream_reader: str  # the `tokentrail.adapters` accumulator of an event stream ("module:Class")
    asks_usage: bool = False  # a stream reports usage only when asked (OpenAI chat: stream_options)
    last_event: LastEvent | None = None  # what marks the stream's last event (None: the body's end tells)


# The last event of a stream, after which an SDK may close the connection without reading the body's end
# (the openai SDK does after `data: [DONE]`): the call is recorded when it passes, not at the body's end.
CHAT = Route(
    "openai.chat", "openai", "openai", "openai:ChatStream", True, LastEvent(b"[DONE]", r"^data:\s*\[DONE\]")
)
RESPONSES = Route(
    "openai.responses",
    "openai",
    "openai",
    "openai:ResponsesStream",
    last_event=LastEvent(b'"response.', r'"type"\s*:\s*"response\.(?:completed|incomplete|failed)"'),
)
EMBEDDINGS = Route("openai.embeddings", "openai", "openai:extract_embeddings", "openai:ChatStream")
MESSAGES = Route(
    "anthropic.messages",
    "anthropic",
    "anthropic",
    "anthropic:MessageStream",
    last_event=LastEvent(b'"message_stop"', r'"type"\s*:\s*"message_stop"'),
)
GENERATE = Route("gemini.generate", "gemini", "gemini", "gemini:GenerateContentStream")
STREAM_GENERATE = Route("gemini.stream", "gemini", "gemini", "gemini:GenerateContentStream")

ROUTES: dict[str, Route] = {
    "/v1/chat/completions": CHAT,
    "/v1/responses": RESPONSES,
    "/v1/embeddings": EMBEDDINGS,
    "/v1/messages": MESSAGES,
}
_GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/")
_GEMINI_METHODS = {"generateContent": GENERATE, "streamGenerateContent": STREAM_GENERATE}


@dataclass(frozen=True, slots=True)
class Match:
    """A request path resolved: its route, the upstream a path prefix names, the path to forward, and the
    model when the path carries it (Gemini)."""

    route: Route
    upstream: str | None
    path: str
    model: str | None = None


def _provider_path(path: str) -> tuple[Route, str | None] | None:
    route = ROUTES.get(path)
    if route is not None:
        return route, None
    for prefix in _GEMINI_PREFIXES:
        if path.startswith(prefix):
            model, _, method = path[len(prefix) :].rpartition(":")
            found = _GEMINI_METHODS.get(method)
            if found is not None and model and "/" not in model:
                return found, unquote(model)
    return None


def match(path: str) -> Match | None:
    """The route of a request path, or None when the gateway does not forward it."""
    found = _provider_path(path)
    if found is not None:
        return Match(found[0], None, path, found[1])
    name, slash, rest = path[1:].partition("/")
    if not slash or not name:
        return None
    found = _provider_path("/" + rest)
    if found is None:
        return None
    return Match(found[0], name, "/" + rest, found[1])
