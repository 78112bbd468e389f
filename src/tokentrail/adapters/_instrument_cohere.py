"""Patch table for `cohere`: the raw clients every call goes through, so plain calls, `with_raw_response`
calls, streams, sync and async, are each recorded once.

cohere 7.x builds each client method on a raw twin: `V2Client.chat(...)` returns
`self._raw_client.chat(...).data`, and `client.with_raw_response` is that raw client. The patch points are
the raw clients' methods — `RawV2Client` / `AsyncRawV2Client` (v2: chat, chat_stream, embed, rerank,
parse) and `RawBaseCohere` / `AsyncRawBaseCohere` (v1: chat, chat_stream, embed, rerank and the legacy
generate, generate_stream, summarize, classify) — and the plain methods are tracked through them
(`_THROUGH`), never a second time. A raw call returns an `HttpResponse` whose `.data` is read for usage;
a raw `chat_stream` / `generate_stream` is a context manager whose response's `.data` (the events) is
handed over inside a tracked stream, recorded when the stream ends or the block is left.

Embed, rerank and parse report `meta.billed_units`: tokens are read as such; rerank is billed in search
units, classify in classifications, parse in pages: `tokentrail.Usage` cannot carry those, so such calls
are recorded `unknown` with the units in the reason. A v1 generate stream's end event carries no billed
units in Cohere's schema: it is recorded `unknown` with that reason (see `adapters.cohere`).
v1 `Client.embed` splits its texts into batches and sends them from a thread pool: each batch is one
record, made on a pool thread (so a `tt.scope` around the call does not reach it; `AsyncClient.embed`
gathers on the caller's loop and keeps the scope).

Patching the raw classes also reaches clients built before `instrument()` (`ClientV2` copies its bound
`chat` / `chat_stream` onto each client object, but those still call the raw client at call time).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from tokentrail.adapters._instrument_target import Call, Request, Target

__all__ = ["CLIENT_MODULES", "NOT_TRACKED", "ROOT", "TARGETS", "WRAP_PATHS", "surface", "tracked"]

logger = logging.getLogger("tokentrail.adapters")

_CONTENT_EVENTS = frozenset({"content-delta", "tool-plan-delta", "tool-call-start", "tool-call-delta"})
_V1_CONTENT_EVENTS = frozenset({"text-generation", "tool-calls-chunk", "tool-calls-generation"})


@dataclass(frozen=True)
class _RawTarget(Target):
    """A raw client method: its `HttpResponse`'s `.data` is the response; a stream method returns the
    context manager that opens the stream."""

    adapter: str | None = "cohere"

    def is_content(self, event: object) -> bool:
        return (
            getattr(event, "type", None) in _CONTENT_EVENTS
            or getattr(event, "event_type", None) in _V1_CONTENT_EVENTS
        )

    def deliver(self, call: Call, request: Request, response: Any, *, asynchronous: bool) -> Any:
        if not request.streaming:
            call.finish_response(getattr(response, "data", response))
            return response
        call_state: Any = call  # v1 stream events (`event_type`) are not recognized by format detection
        call_state.stream_reader = "cohere:ChatStream"
        if asynchronous:
            return _AsyncStreamOpening(response, call)
        return _StreamOpening(response, call)


class _Opening:
    """What the sync and async openings share: the SDK's context manager, the call, the tracked stream."""

    __slots__ = ("_call", "_opening", "_stream")

    def __init__(self, opening: Any, call: Call) -> None:
        self._opening = opening
        self._call = call
        self._stream: Any = None

    def _track(self, response: Any, *, asynchronous: bool) -> Any:
        """The SDK's response again, its `.data` (the events) inside a stream that records itself."""
        self._stream = self._call.tracked_stream(response.data, asynchronous=asynchronous)
        try:
            return type(response)(response=response.response, data=self._stream)
        except Exception:
            logger.debug("tokentrail could not hand over a tracked cohere stream", exc_info=True)
            self._stream = None
            call_state: Any = self._call
            call_state.finish_unread("tokentrail could not observe this stream's events")
            return response

    def __getattr__(self, name: str) -> Any:
        if name in _Opening.__slots__:  # not set yet
            raise AttributeError(name)
        return getattr(self._opening, name)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._stream is None:  # never opened (no request sent), or handled already
                call_state: Any = self._call
                call_state.discard()


class _StreamOpening(_Opening):
    """A raw sync `chat_stream` / `generate_stream`, unchanged to its caller."""

    __slots__ = ()

    def __enter__(self) -> Any:
        try:
            response = self._opening.__enter__()
        except BaseException:
            self._call.failed()
            raise
        return self._track(response, asynchronous=False)

    def __exit__(self, *exc_info: Any) -> Any:
        if self._stream is not None:  # leaving the block ends the stream (`partial` before its end)
            try:
                self._stream.close()
            except Exception:
                logger.debug("tokentrail could not close a tracked cohere stream", exc_info=True)
        return self._opening.__exit__(*exc_info)


class _AsyncStreamOpening(_Opening):
    """A raw async `chat_stream` / `generate_stream`, unchanged to its caller."""

    __slots__ = ()

    async def __aenter__(self) -> Any:
        try:
            response = await self._opening.__aenter__()
        except BaseException:
            self._call.failed()
            raise
        return self._track(response, asynchronous=True)

    async def __aexit__(self, *exc_info: Any) -> Any:
        if self._stream is not None:
            try:
                await self._stream.aclose()
            except Exception:
                logger.debug("tokentrail could not close a tracked cohere stream", exc_info=True)
        return await self._opening.__aexit__(*exc_info)


_V2 = "cohere.v2.raw_client"
_V1 = "cohere.raw_base_client"
_V2_METHODS = {
    "chat": "never",
    "chat_stream": "always",
    "embed": "never",
    "rerank": "never",
    "parse": "never",
}
_V1_METHODS = {
    "chat": "never",
    "chat_stream": "always",
    "embed": "never",
    "rerank": "never",
    "generate": "never",
    "generate_stream": "always",
    "summarize": "never",
    "classify": "never",  # billed in classifications
}
_RAW = {_V2: ("RawV2Client", "AsyncRawV2Client"), _V1: ("RawBaseCohere", "AsyncRawBaseCohere")}
_PLAIN = {
    "RawV2Client": "V2Client",
    "AsyncRawV2Client": "AsyncV2Client",
    "RawBaseCohere": "BaseCohere",
    "AsyncRawBaseCohere": "AsyncBaseCohere",
}

TARGETS: tuple[Target, ...] = tuple(
    _RawTarget("cohere", module, cls, attr, "cohere", streaming=streaming)
    for module, classes in _RAW.items()
    for cls in classes
    for attr, streaming in (_V2_METHODS if module == _V2 else _V1_METHODS).items()
)

# the plain clients' methods: each returns (or streams) what the tracked raw method returned
_THROUGH = {
    **{f"{_PLAIN[t.cls]}.{t.attr}": f"{t.cls}.{t.attr}" for t in TARGETS},
    "Client.embed": "RawBaseCohere.embed",  # batches sent through BaseCohere.embed
    "AsyncClient.embed": "AsyncRawBaseCohere.embed",
}

_JOBS = "asynchronous batch job: billed when the job runs, results delivered as files, not per call"
NOT_TRACKED: dict[str, str] = {
    **{
        f"{c}.{m}": "free endpoint (tokenizer)"
        for c in (
            "BaseCohere",
            "AsyncBaseCohere",
            "Client",
            "AsyncClient",
            "RawBaseCohere",
            "AsyncRawBaseCohere",
        )
        for m in ("tokenize", "detokenize")
    },
    **{f"{c}.wait": "waits for a job to finish; makes no billable call" for c in ("Client", "AsyncClient")},
    **{
        f"{prefix}{c}.{m}": _JOBS
        for prefix in ("", "Async", "Raw", "AsyncRaw")
        for c in ("BatchesClient", "EmbedJobsClient")
        for m in ("create", "get", "list", "retrieve")
    },
}


def surface() -> list[str]:
    """The installed SDK's public methods whose return type carries usage (`adapters._surface` rule)."""
    from tokentrail.adapters._surface import sdk_classes, usage_methods

    return usage_methods(sdk_classes("cohere", lambda k: True, skip=("cohere.types", "cohere.v2.types")))


def tracked() -> set[str]:
    """The `Class.method` names TARGETS track, and the methods that go through them."""
    from tokentrail.adapters._surface import tracked_names

    return tracked_names(TARGETS, _THROUGH)


ROOT = "cohere"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("cohere",)
# `wrap(client)` wraps the client's raw clients: `with_raw_response` (v1 `RawBaseCohere`; for `ClientV2` a
# proxy over a v1 and a v2 raw client), and the raw client of a v1 client's `.v2`
WRAP_PATHS: tuple[tuple[str, ...], ...] = (
    ("with_raw_response",),
    ("with_raw_response", "_v1"),
    ("with_raw_response", "_v2"),
    ("v2", "with_raw_response"),
)
