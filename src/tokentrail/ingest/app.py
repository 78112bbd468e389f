"""`POST /v1/traces` as a plain ASGI app: OTLP/HTTP trace exports in, records out.

    app = otlp_app(tracker)                                  # or otlp_app("sqlite:///usage.db")
    fastapi_app.router.add_route("/v1/traces", app, methods=["POST"])   # `tokentrail serve` does this
    collector_app(tracker, token=...)                        # `tokentrail collect`: /v1/traces + /healthz

Answers as the OTLP/HTTP spec says (https://opentelemetry.io/docs/specs/otlp/#otlphttp-response):
200 with an empty `ExportTraceServiceResponse` in the request's encoding; 400 with a `google.rpc.Status`
naming what is malformed (nothing recorded); 413 for a body over `max_bytes` (before or after gzip),
refused before it is read whole; 415 for another content type or encoding; 405 for another method;
503 when the store cannot be read or written (the exporter retries; a retry records nothing twice).
The work runs on a thread, so the event loop keeps serving. No dependency beyond the standard library
(protobuf bodies need opentelemetry-proto, the `otlp` extra).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from tokentrail.ingest.otlp import (
    DEFAULT_MAX_BYTES,
    PROTOBUF,
    Malformed,
    TooLarge,
    UnsupportedMedia,
    decode,
    inflate,
)
from tokentrail.ingest.records import Ingestor, IngestResult

if TYPE_CHECKING:
    from tokentrail.tracker import Tracker

__all__ = ["PATH", "UNTIMED_REASON", "OtlpApp", "collector_app", "otlp_app"]

PATH = "/v1/traces"
UNTIMED_REASON = (
    "{count} span(s) with model usage have neither a start nor an end time: tokentrail dates a call by its "
    "span's end time (the record id derives from it), so an undated span could be counted again if resent"
)
logger = logging.getLogger("tokentrail")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_GRPC_INVALID_ARGUMENT, _GRPC_RESOURCE_EXHAUSTED, _GRPC_UNIMPLEMENTED, _GRPC_UNAVAILABLE = 3, 8, 12, 14


class OtlpApp:
    """The ASGI app answering OTLP/HTTP trace exports (any path it is mounted at)."""

    def __init__(
        self, ingestor: Ingestor | Callable[[], Ingestor], max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self._ingestor = ingestor if isinstance(ingestor, Ingestor) else None
        self._open = ingestor if not isinstance(ingestor, Ingestor) else None
        self._opening = threading.Lock()
        self.max_bytes = max_bytes

    @property
    def ingestor(self) -> Ingestor:
        """The ingestor (a store given by URL is opened for writing on the first export)."""
        if self._ingestor is None:
            with self._opening:
                if self._ingestor is None:
                    assert self._open is not None
                    self._ingestor = self._open()
        return self._ingestor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {key.lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
        content_type = headers.get(b"content-type")
        if scope["method"] != "POST":
            await _reply(
                send, 405, content_type, _GRPC_UNIMPLEMENTED, "only POST is allowed", [(b"allow", b"POST")]
            )
            return
        body = await self._body(headers, receive)
        if body is None:
            await _reply(
                send, 413, content_type, _GRPC_RESOURCE_EXHAUSTED, f"the body is over {self.max_bytes} bytes"
            )
            return
        loop = asyncio.get_running_loop()
        status, code, message, result = await loop.run_in_executor(
            None, self._handle, body, content_type, headers.get(b"content-encoding")
        )
        if status != 200:
            await _reply(send, status, content_type, code, message)
            return
        await _reply(
            send,
            200,
            content_type,
            0,
            "",
            [(b"x-tokentrail-ingest", _summary(result).encode())],
            rejected=result.untimed if result is not None else 0,
        )

    async def _body(self, headers: dict[bytes, str], receive: Receive) -> bytes | None:
        """The request body, or None when it is over the limit (read no further than that)."""
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _handle(
        self, body: bytes, content_type: str | None, encoding: str | None
    ) -> tuple[int, int, str, IngestResult | None]:
        try:
            spans = decode(inflate(body, encoding, self.max_bytes), content_type)
        except Malformed as exc:
            return 400, _GRPC_INVALID_ARGUMENT, str(exc), None
        except TooLarge as exc:
            return 413, _GRPC_RESOURCE_EXHAUSTED, str(exc), None
        except UnsupportedMedia as exc:
            return 415, _GRPC_INVALID_ARGUMENT, str(exc), None
        try:
            return 200, 0, "", self.ingestor.ingest(spans)
        except Exception as exc:  # the store is down: the exporter retries later
            logger.warning("tokentrail: could not record exported spans: %s", exc)
            return 503, _GRPC_UNAVAILABLE, f"the spans could not be recorded: {exc}", None


def otlp_app(
    target: Tracker | Ingestor | str, *, max_bytes: int = DEFAULT_MAX_BYTES, **options: Any
) -> OtlpApp:
    """The `POST /v1/traces` ASGI app recording onto a tracker (or a store URL opened for writing).
    `options` go to the `Ingestor` (`hold_seconds`, `journal`, …); held spans are recorded when their
    deadline passes by a daemon thread, and at exit."""
    options.setdefault("ticker", True)
    if isinstance(target, Ingestor):
        return OtlpApp(target, max_bytes)
    if isinstance(target, str):
        url = target

        def open_store() -> Ingestor:
            from tokentrail.tracker import Tracker

            return Ingestor(Tracker(store=url), **options)

        return OtlpApp(open_store, max_bytes)
    return OtlpApp(Ingestor(target, **options), max_bytes)


def collector_app(
    target: Tracker | Ingestor | str,
    *,
    token: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    **options: Any,
) -> Any:
    """`tokentrail collect`'s app: `POST /v1/traces`, `GET /healthz`, 404 elsewhere; with `token`, every
    request needs it (`Authorization: Bearer …`, the dashboard's `TokenAuth`)."""
    traces = otlp_app(target, max_bytes=max_bytes, **options)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path == PATH:
            await traces(scope, receive, send)
        elif path == "/healthz" and scope["method"] == "GET":
            await _send(send, 200, b"text/plain", b"ok\n")
        else:
            await _send(send, 404, b"text/plain", b"not found: tokentrail collect answers POST /v1/traces\n")

    app.traces = traces  # type: ignore[attr-defined]
    if token:
        from tokentrail.server._auth import TokenAuth

        guarded = TokenAuth(app, token)
        guarded.traces = traces  # type: ignore[attr-defined]
        return guarded
    return app


def _summary(result: IngestResult | None) -> str:
    if result is None:
        return ""
    return ";".join(f"{name}={value}" for name, value in result.as_dict().items())


async def _reply(
    send: Send,
    status: int,
    content_type: str | None,
    code: int,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
    rejected: int = 0,
) -> None:
    """An OTLP response in the request's encoding: an export response (with `partial_success` naming
    the `rejected` spans), or a google.rpc.Status."""
    protobuf = (content_type or "").split(";", 1)[0].strip().lower() == PROTOBUF
    if status == 200 and rejected:
        # ExportTraceServiceResponse {partial_success = 1: ExportTracePartialSuccess {rejected_spans = 1
        # (int64), error_message = 2}}; https://opentelemetry.io/docs/specs/otlp/#partial-success-1
        reason = UNTIMED_REASON.format(count=rejected)
        if protobuf:
            text = reason.encode()
            inner = b"\x08" + _varint(rejected) + b"\x12" + _varint(len(text)) + text
            body = b"\x0a" + _varint(len(inner)) + inner
        else:
            body = json.dumps(
                {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": reason}}
            ).encode()
    elif status == 200:
        body = b"" if protobuf else b"{}"
    elif protobuf:
        body = _status_message(code, message)
    else:
        body = json.dumps({"code": code, "message": message}).encode()
    await _send(send, status, b"application/x-protobuf" if protobuf else b"application/json", body, extra)


def _status_message(code: int, message: str) -> bytes:
    """google.rpc.Status {code = 1 (int32), message = 2 (string)} in protobuf wire format."""
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


async def _send(
    send: Send, status: int, content_type: bytes, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
