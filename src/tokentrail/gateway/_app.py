"""The gateway's ASGI application: one request in, forwarded to its upstream, the response relayed to the
client as it arrives and recorded through the tracker like any instrumented call.

The path of a request:

    route (path) → body read (size-capped) → virtual key / attribution headers → budget reservation
    → upstream (aiohttp, streaming) → relay chunk by chunk → record on the capture worker

Recording reuses the in-process machinery unchanged: a `Call` (`adapters._instrument_call`) holds the
timing and the reservation; a JSON body is kept as the chunks that passed and decoded on the capture
worker (`Call.finish_body`); an event stream is split as it passes and its usage-bearing events are read
there too (`_events.DeferredStream`). Upstream errors (a non-2xx answer, unreachable, timed out) record
nothing and release the reservation; a client that leaves mid-stream records what was seen (partial).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from tokentrail.adapters._instrument_call import Call, _estimate_input
from tokentrail.adapters._instrument_target import Target, first_int
from tokentrail.budgets.manager import attribution_scope
from tokentrail.errors import BudgetExceeded
from tokentrail.gateway._access import GatewayBudgets, KeyRegistry
from tokentrail.gateway._events import (
    ArrayStream,
    DeferredStream,
    EventSplitter,
    LastEvent,
    strip_usage,
    strip_usage_all,
)
from tokentrail.gateway._metrics import GatewayMetrics
from tokentrail.gateway._routes import STREAM_GENERATE, Match, Route, match
from tokentrail.gateway._shapes import ErrorReply, error_reply
from tokentrail.gateway._upstream import (
    Upstream,
    forward_headers,
    forward_query,
    presented_key,
    target_url,
)
from tokentrail.gateway.keys import VirtualKey, open_key_store
from tokentrail.ingest.app import PATH as TRACES_PATH
from tokentrail.scope import current_scope
from tokentrail.scope import scope as attribution

if TYPE_CHECKING:
    from tokentrail.budgets import Budget
    from tokentrail.ingest.app import OtlpApp
    from tokentrail.tracker import Tracker

__all__ = ["Gateway", "GatewayConfig"]

logger = logging.getLogger("tokentrail.gateway")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_STORE = "sqlite:///tokentrail.db"
_ATTRIBUTION_HEADERS = {
    b"x-tokentrail-agent": "agent",
    b"x-tokentrail-session": "session",
    b"x-tokentrail-user": "user",
    b"x-tokentrail-tool": "tool",
    b"x-tokentrail-tags": "tags",
}
_UPSTREAM_HEADER = b"x-tokentrail-upstream"
TOKEN_HEADER = "X-Tokentrail-Token"  # the gateway token, from clients that have no virtual key
_TOKEN_HEADER = TOKEN_HEADER.lower().encode()
_MAX_ATTRIBUTION = 256  # characters of one attribution header value
# response headers the gateway does not pass on (hop-by-hop; uvicorn frames the body itself)
_RESPONSE_DROPPED = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"trailer", b"upgrade"})
_DEFAULT_UPSTREAMS = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}
_LARGE_PROMPT = 32 * 1024  # bytes of request body above which the prompt is counted off the event loop
_OPERATIONS = ("/healthz", "/readyz", "/metrics")
_MAX_MODELS = 4096  # distinct model names remembered as counted
# a model of each API whose prompt is counted and worst case priced at start-up (loading what they need)
_SAMPLE_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash"}


@dataclass
class GatewayConfig:
    """What `tokentrail gateway` runs with (see `docs/gateway.md`)."""

    upstreams: dict[str, Upstream]
    store: str = DEFAULT_STORE
    budgets: list[Budget] = field(default_factory=list)
    budget_backend: str | None = None  # memory:// when budgets are given without one
    keys: str | None = None  # the virtual key store: a SQLite file or postgresql://…; None: no virtual keys
    require_key: bool = False  # refuse requests without a virtual key (or the gateway token)
    token: str | None = field(default=None, repr=False)  # refuse requests with neither it nor a virtual key
    timeout: float = 600.0  # seconds to wait for the upstream's next bytes
    connect_timeout: float = 10.0
    max_in_flight: int = 4096  # requests forwarded at once (and upstream connections); above it: 503
    max_body_bytes: int = 32 * 1024 * 1024
    key_refresh_seconds: float = 30.0
    # file keeping OTLP call spans held for their agent span across a crash; None: held in memory only
    journal: str | None = None


def _targets() -> dict[str, Target]:
    from tokentrail.gateway._routes import GENERATE, ROUTES

    routes = [*ROUTES.values(), GENERATE, STREAM_GENERATE]
    return {
        r.name: Target("gateway", "tokentrail.gateway", "", r.name, r.api, adapter=r.adapter) for r in routes
    }


class Gateway:
    """The ASGI app. `tracker` defaults to one over `config.store` (the gateway closes what it opens)."""

    def __init__(self, config: GatewayConfig, *, tracker: Tracker | None = None) -> None:
        self.config = config
        self.budgets = GatewayBudgets(config.budgets, config.budget_backend)
        self._owns_tracker = tracker is None
        if tracker is None:
            from tokentrail.tracker import Tracker

            tracker = Tracker(config.store)
        tracker.add_sink(self.budgets.observe)
        self.tracker = tracker
        self._captures = tracker._call_settings()[0]
        self.keys: KeyRegistry | None = None
        if config.keys is not None:
            self.keys = KeyRegistry(open_key_store(config.keys), self.budgets, config.key_refresh_seconds)
            self.keys.reload()
        self.metrics = GatewayMetrics()
        self.metrics.extra = lambda: {"budget_backend_errors": float(self.budgets.backend_errors())}
        self._targets = _targets()
        self._counted: set[str | None] = set()  # models whose prompts were counted once (tokenizer loaded)
        self._client: aiohttp.ClientSession | None = None
        self._traces: OtlpApp | None = None  # POST /v1/traces, made on the first export without a journal
        if config.journal is not None:  # opened (and locked) now: spans held before a restart are held again
            self._traces = self._otlp_app()
        self._closed = False

    # -- ASGI ---------------------------------------------------------------------------------------------

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client()
                await asyncio.to_thread(self.warm)  # before the first request is accepted
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def warm(self) -> None:
        """Build what the first requests would otherwise build on the event loop (blocking; run off it at
        start-up): the price catalog, and with budgets the tokenizer that counts prompts for reservations
        and the reservation planner, for each configured upstream."""
        from tokentrail.pricing.catalog import default_catalog

        default_catalog()
        manager = self.budgets.manager
        if manager is None:
            return
        for upstream in self.config.upstreams.values():
            model = _SAMPLE_MODELS[upstream.api]
            request = {"model": model, "messages": [{"role": "user", "content": "warm"}]}
            manager.estimate(model, upstream.provider, _estimate_input(request, model), 16)
            self._counted.add(model)

    def client(self) -> aiohttp.ClientSession:
        """The upstream HTTP client (made at start-up or on first use, inside the server's event loop).

        Bodies pass as the upstream sent them (no decompression), no cookies are kept between clients,
        no proxy is read from the environment, and redirects are relayed, not followed."""
        client = self._client
        if client is None:
            config = self.config
            client = self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=config.max_in_flight, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=None, sock_connect=config.connect_timeout, sock_read=config.timeout
                ),
                auto_decompress=False,
                skip_auto_headers=("Content-Type",),  # none added to a body the client sent without one
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return client

    async def aclose(self) -> None:
        """Close the upstream client, record every pending call and close the ledger and budgets."""
        if self._closed:
            return
        self._closed = True
        if self._client is not None:
            await self._client.close()
        await asyncio.to_thread(self.close_ledger)

    def close_ledger(self) -> None:
        if self._traces is not None:  # spans held for their agent span are recorded first
            self._traces.ingestor.close()
        if self._owns_tracker:
            self.tracker.close()
        else:
            self.tracker.flush()
        self.budgets.close()
        if self.keys is not None:
            self.keys.store.close()

    # -- dispatch -----------------------------------------------------------------------------------------

    async def _http(self, scope: Message, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "GET" and path in _OPERATIONS:
            await self._operations(path, send)
            return
        if path == TRACES_PATH:
            await self._ingest(scope, receive, send)
            return
        found = match(path)
        if found is None:
            await _reply(send, error_reply("openai", 404, f"the gateway does not forward {path}"))
            return
        api = found.route.api
        if method != "POST":
            await _reply(send, error_reply(api, 404, f"{method} {path} is not forwarded (POST only)"))
            return
        upstream = self._upstream(found, scope["headers"])
        if upstream is None:
            name = found.upstream or _header(scope["headers"], _UPSTREAM_HEADER) or _DEFAULT_UPSTREAMS[api]
            await _reply(send, error_reply(api, 404, f"no upstream named {name!r} is configured"))
            return
        if self.metrics.in_flight >= self.config.max_in_flight:
            status = await self._refuse_busy(receive, send, api, upstream)
            self.metrics.requests[(found.route.name, upstream.name, status)] += 1
            return
        self.metrics.in_flight += 1
        status = 0
        try:
            status = await self._exchange(scope, receive, send, found, upstream)
        except _ClientGone:
            self.metrics.client_disconnects += 1
            status = 499
        finally:
            self.metrics.in_flight -= 1
            self.metrics.requests[(found.route.name, upstream.name, status)] += 1

    async def _ingest(self, scope: Message, receive: Receive, send: Send) -> None:
        """OTLP/HTTP spans from any language, recorded like forwarded calls (same ledger, budgets and
        metrics). With a gateway token or required keys, the exporter sends the token (`X-Tokentrail-Token`
        or `Authorization: Bearer`)."""
        if self.config.token is not None or self.config.require_key:
            headers = scope["headers"]
            bearer = _header(headers, b"authorization") or ""
            given = _header(headers, _TOKEN_HEADER) or bearer.removeprefix("Bearer ").strip()
            token = self.config.token
            if token is None or not given or not hmac.compare_digest(given.encode("latin-1"), token.encode()):
                self.metrics.refused[("otlp", "invalid_token")] += 1
                message = f"OTLP exports need the gateway token ({TOKEN_HEADER} or Authorization: Bearer)"
                await _reply(send, error_reply("openai", 401, message))
                return
        if self._traces is None:
            self._traces = self._otlp_app()
        await self._traces(scope, receive, send)

    def _otlp_app(self) -> OtlpApp:
        """POST /v1/traces onto the tracker; call spans held for their agent span are kept in
        `config.journal` (reopened: the spans it lists are held again) until they are recorded."""
        from tokentrail.ingest.app import otlp_app

        return otlp_app(self.tracker, journal=self.config.journal)

    async def _refuse_busy(self, receive: Receive, send: Send, api: str, upstream: Upstream) -> int:
        """Above `max_in_flight`: 503 in the provider's shape with Retry-After (the SDKs retry after it),
        not queued. The body is read (and dropped) first, so the client is not cut off mid-send and sees
        the answer."""
        self.metrics.refused[(upstream.name, "busy")] += 1
        try:
            await _drain_body(receive)
        except _ClientGone:
            self.metrics.client_disconnects += 1
            return 499
        limit = self.config.max_in_flight
        message = f"the gateway is at its limit of {limit} requests in flight; retry shortly"
        return await _reply(send, error_reply(api, 503, message, headers={"retry-after": "1"}))

    def _upstream(self, found: Match, headers: list[tuple[bytes, bytes]]) -> Upstream | None:
        upstreams = self.config.upstreams
        name = found.upstream or _header(headers, _UPSTREAM_HEADER)
        if name is not None:
            upstream = upstreams.get(name.lower())
            return upstream if upstream is not None and upstream.api == found.route.api else None
        default = upstreams.get(_DEFAULT_UPSTREAMS[found.route.api])
        if default is None and found.route.api == "gemini":
            default = upstreams.get("gemini")
        return default

    # -- one forwarded request ------------------------------------------------------------------------------

    async def _exchange(
        self, scope: Message, receive: Receive, send: Send, found: Match, upstream: Upstream
    ) -> int:
        started = time.perf_counter()
        route = found.route
        body = await _read_body(receive, self.config.max_body_bytes)
        if body is None:
            limit = self.config.max_body_bytes
            return await _reply(send, error_reply(route.api, 413, f"the request body is over {limit} bytes"))
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        query: bytes = scope.get("query_string", b"")
        secret = presented_key(headers, query)
        key: VirtualKey | None = None
        if secret is not None:
            key = await self.keys.lookup(secret) if self.keys is not None else None
            if key is None:
                self.metrics.refused[(upstream.name, "invalid_key")] += 1
                return await _reply(send, error_reply(route.api, 401, "invalid or revoked virtual key"))
            if upstream.key is None:
                message = f"the gateway has no provider key for upstream {upstream.name!r}"
                return await _reply(send, error_reply(route.api, 502, message))
        elif self.config.token is not None or self.config.require_key:
            refusal = self._check_token(headers, upstream, route.api)
            if refusal is not None:
                return await _reply(send, refusal)
        values = _attribution(headers, key)
        if values is None:
            message = (
                f"X-Tokentrail-* header values must be printable ASCII, at most {_MAX_ATTRIBUTION} characters"
            )
            self.metrics.refused[(upstream.name, "bad_header")] += 1
            return await _reply(send, error_reply(route.api, 400, message))
        request = _json_object(body)
        streaming = route is STREAM_GENERATE or request.get("stream") is True
        strip = route.asks_usage and streaming and not _asked_usage(request)
        if strip:
            body = _ask_usage(body, request)
        # the client leaving, noticed from here on; tasks are made on `gone`'s loop: on Python 3.11 each
        # asyncio.get_running_loop() (create_task, ensure_future, …) is a getpid() system call
        gone = asyncio.get_running_loop().create_task(_disconnected(receive))
        try:
            with attribution(**values):
                return await self._forward(
                    scope, receive, send, found, upstream, body, request, secret, strip, started, gone
                )
        finally:
            gone.cancel()

    def _check_token(
        self, headers: list[tuple[bytes, bytes]], upstream: Upstream, api: str
    ) -> ErrorReply | None:
        """A request without a virtual key: let it through with the gateway token (when one is set), else
        the refusal (401)."""
        token = self.config.token
        given = _header(headers, _TOKEN_HEADER)
        if token is not None and given is not None:
            if hmac.compare_digest(given.encode("latin-1"), token.encode("utf-8")):
                return None
            self.metrics.refused[(upstream.name, "invalid_token")] += 1
            return error_reply(api, 401, "invalid gateway token")
        self.metrics.refused[(upstream.name, "missing_key")] += 1
        if token is None:
            return error_reply(api, 401, "this gateway requires a virtual key")
        return error_reply(api, 401, f"this gateway requires a virtual key or its token ({TOKEN_HEADER})")

    async def _forward(
        self,
        scope: Message,
        receive: Receive,
        send: Send,
        found: Match,
        upstream: Upstream,
        body: bytes,
        request: dict[str, Any],
        secret: str | None,
        strip: bool,
        started: float,
        gone: asyncio.Future[None],
    ) -> int:
        route = found.route
        requested_model = request.get("model")
        model = found.model or (
            requested_model if isinstance(requested_model, str) and requested_model else None
        )
        call = Call(self.tracker, self._targets[route.name], upstream.provider, model)
        call.captures = self._captures
        call.stream_reader = route.stream_reader
        refusal = await self._reserve(call, request, model, upstream, len(body))
        if refusal is not None:
            return await _reply(send, refusal)
        real_key = upstream.key if secret is not None else None
        url = target_url(
            upstream, found.path, forward_query(scope.get("query_string", b""), secret, real_key)
        )
        if gone.done():  # the client left while its budget was reserved: nothing is forwarded
            call.failed()
            raise _ClientGone
        sent = time.perf_counter()
        asked = asyncio.ensure_future(
            self.client().request(
                "POST",
                URL(url, encoded=True),  # the path and query as the client sent them (not re-quoted)
                headers=forward_headers(scope["headers"], secret, real_key),
                data=body,
                allow_redirects=False,
            ),
            loop=gone.get_loop(),
        )
        try:
            await _first_done(asked, gone)
        except BaseException:
            asked.cancel()
            call.failed()
            raise
        if not asked.done():  # the client left before the upstream answered: the upstream request is closed
            asked.cancel()
            (late,) = await asyncio.gather(asked, return_exceptions=True)
            if isinstance(late, aiohttp.ClientResponse):
                late.close()
            call.failed()
            raise _ClientGone
        try:
            response = asked.result()
        except TimeoutError:  # aiohttp's connect and read timeouts are TimeoutErrors
            call.failed()
            self.metrics.upstream_errors[(upstream.name, "timeout")] += 1
            message = f"upstream {upstream.name!r} did not answer within {self.config.timeout:g}s"
            return await _reply(send, error_reply(route.api, 504, message))
        except (aiohttp.ClientError, OSError) as exc:
            call.failed()
            self.metrics.upstream_errors[(upstream.name, "unreachable")] += 1
            message = f"upstream {upstream.name!r} could not be reached ({type(exc).__name__})"
            return await _reply(send, error_reply(route.api, 502, message))
        except BaseException:
            call.failed()
            raise
        labels = (route.name, upstream.name)
        self.metrics.upstream_headers.observe(labels, time.perf_counter() - sent)
        try:
            return await self._relay(gone, send, response, call, strip, route)
        finally:
            self.metrics.durations.observe(labels, time.perf_counter() - started)
            response.release()  # back to the pool when the body was read to its end, else closed

    async def _reserve(
        self, call: Call, request: dict[str, Any], model: str | None, upstream: Upstream, size: int
    ) -> ErrorReply | None:
        """Hold the call's worst case in every budget in scope; the refusal to answer when there is no room."""
        manager = self.budgets.manager
        if manager is None:
            return None
        counted = self._counted
        if size > _LARGE_PROMPT or model not in counted:  # a model's first count may load its tokenizer
            prompt = await asyncio.to_thread(_estimate_input, request, model)
            if len(counted) > _MAX_MODELS:
                counted.clear()
            counted.add(model)
        else:
            prompt = _estimate_input(request, model)
        try:
            call.reservation = await manager.areserve(
                model,
                upstream.provider,
                prompt,
                _output_limit(request),
                scope=attribution_scope(current_scope()),
            )
        except BudgetExceeded as exc:
            self.metrics.refused[(upstream.name, "budget")] += 1
            return _refusal(call.target.provider, exc)
        call.started = time.perf_counter()
        return None

    async def _relay(
        self,
        gone: asyncio.Future[None],
        send: Send,
        response: aiohttp.ClientResponse,
        call: Call,
        strip: bool,
        route: Route,
    ) -> int:
        status = response.status
        headers = [(k.lower(), v) for k, v in response.raw_headers if k.lower() not in _RESPONSE_DROPPED]
        sink: _Sink
        if not 200 <= status < 300:
            call.failed()  # an error answer is not billed: relayed unchanged, nothing recorded
            sink = _Sink()
        elif "text/event-stream" in response.headers.get("content-type", ""):
            sink = _EventSink(call, strip, route.last_event)
            if strip:
                headers = [(k, v) for k, v in headers if k != b"content-length"]
        elif (
            route is STREAM_GENERATE
        ):  # Gemini streamGenerateContent without alt=sse: one JSON array of chunks
            sink = _ArraySink(call)
            sink.holds_last = "content-length" in response.headers  # else the chunked end tells the client
        else:
            sink = _BodySink(call)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        pump = gone.get_loop().create_task(_pump(send, response, sink))
        try:
            await _first_done(pump, gone)
        except BaseException:  # the server is cancelling this request: the client is gone
            pump.cancel()
            gone.cancel()
            sink.end(aborted=True, reason="the request was cancelled before the response ended")
            raise
        if sink.complete and not pump.done():  # the body's end woke the watcher: not a disconnect
            await asyncio.wait((pump,))
        if sink.ended and not pump.done():  # the client left after the stream's last event: it had it all
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            return status
        if pump.done():
            gone.cancel()
            error = pump.exception()
            if error is not None:
                sink.end(aborted=True, error=error, reason="the upstream failed before the response ended")
                self.metrics.upstream_errors[(call.provider, "broken_body")] += 1
                raise error  # the client's connection is dropped: it must not see a complete body
            return status
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        self.metrics.client_disconnects += 1
        sink.end(aborted=True, reason="the client disconnected before the response ended")
        return 499

    # -- operations endpoints ------------------------------------------------------------------------------

    async def _operations(self, path: str, send: Send) -> None:
        if path == "/healthz":
            await _reply(send, _json_reply(200, {"status": "ok"}))
        elif path == "/readyz":
            checks = await asyncio.to_thread(self.readiness)
            ready = all(value == "ok" for value in checks.values())
            await _reply(send, _json_reply(200 if ready else 503, {"ready": ready, "checks": checks}))
        else:
            body, content_type = self.metrics.render()
            await _reply(send, ErrorReply(200, [(b"content-type", content_type.encode())], body))

    def _ping_ledger(self) -> None:
        """A cheap read of the ledger (the records before 1970: an index lookup), raising when it is down."""
        store = self.tracker.store
        raw_count = getattr(store, "raw_count", None)
        if callable(raw_count):
            raw_count(0)
        else:
            self.tracker.totals(since=datetime.now(timezone.utc))

    def readiness(self) -> dict[str, str]:
        """ "ok" or what failed, for the ledger, the budget back-end and the key store (blocking)."""
        checks: dict[str, Callable[[], object]] = {"ledger": self._ping_ledger}
        if self.budgets.backend is not None:
            checks["budgets"] = self.budgets.ping
        if self.keys is not None:
            checks["keys"] = self.keys.store.ping
        results = {}
        for name, check in checks.items():
            try:
                check()
                results[name] = "ok"
            except Exception as exc:  # the error's text may hold a URL with a password: its type only
                logger.warning("tokentrail gateway: %s is not ready (%s)", name, type(exc).__name__)
                results[name] = f"down ({type(exc).__name__})"
        return results


# -- what the relay does with the body ------------------------------------------------------------------------


class _Sink:
    """An error answer: passed through, nothing recorded (the call was failed already)."""

    complete = False  # set when the body's last piece is handed to the server
    holds_last = False  # keep the last chunk back until the call is queued (see `_pump`)
    ended = False

    def end(self, *, aborted: bool, error: BaseException | None = None, reason: str = "") -> None:
        """The body ended, or was cut off (`aborted`, with the `error` or `reason`): record it, once."""
        if not self.ended:
            self.ended = True
            self.finish(aborted=aborted, error=error, reason=reason)

    def chunk(self, chunk: bytes) -> bytes:
        return chunk

    def tail(self) -> bytes:
        return b""

    def finish(self, *, aborted: bool, error: BaseException | None = None, reason: str = "") -> None:
        """Record the call (an error answer: nothing to record)."""


class _BodySink(_Sink):
    """A JSON body: the chunks kept (references) and decoded on the capture worker at the end."""

    holds_last = True

    def __init__(self, call: Call) -> None:
        self.call = call
        self.chunks: list[bytes] = []

    def chunk(self, chunk: bytes) -> bytes:
        self.chunks.append(chunk)
        return chunk

    def finish(self, *, aborted: bool, error: BaseException | None = None, reason: str = "") -> None:
        if aborted:
            self.call.finish_unread(reason)
        else:
            self.call.finish_body(self.chunks)
        self.chunks = []


class _EventSink(_Sink):
    """An event stream: split as it passes, usage-bearing events kept for the capture worker; with `strip`
    (OpenAI chat, usage asked for by the gateway) only whole events are passed on, minus the usage chunk.
    The stream's last event (`last_event`, by route) ends it: the call is queued for recording before that
    event is passed on, as the client may close the connection as soon as it has it."""

    def __init__(self, call: Call, strip: bool, last_event: LastEvent | None) -> None:
        self.call = call
        self.strip = strip
        self.last_event = last_event
        self.splitter = EventSplitter()
        self.stream = DeferredStream(call.new_accumulator())
        call.keep_context()

    def chunk(self, chunk: bytes) -> bytes:
        call = self.call
        if call.first_token_at is None:
            call.first_token_at = time.perf_counter()
        events = self.splitter.split(chunk)
        if not self.ended and self.stream.take_all(events, self.last_event):
            self.end(aborted=False)  # the stream's last event: recorded before the client sees it
        if not self.strip:
            return chunk
        return strip_usage_all(events)

    def tail(self) -> bytes:
        rest = self.splitter.rest()
        if not rest.strip():
            return rest if self.strip else b""
        if not self.ended:
            self.stream.take(rest)
        if not self.strip:
            return b""
        return strip_usage(rest) or b""

    def finish(self, *, aborted: bool, error: BaseException | None = None, reason: str = "") -> None:
        if isinstance(error, Exception) and self.stream.events == 0:
            self.call.failed()
            return
        self.call.finish_stream(self.stream, aborted=aborted)


class _ArraySink(_Sink):
    """A stream sent as one JSON array (Gemini without alt=sse): kept as it passes, read when it ends."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.stream = ArrayStream(call.new_accumulator())
        call.keep_context()

    def chunk(self, chunk: bytes) -> bytes:
        if self.call.first_token_at is None:
            self.call.first_token_at = time.perf_counter()
        self.stream.take(chunk)
        return chunk

    def finish(self, *, aborted: bool, error: BaseException | None = None, reason: str = "") -> None:
        if isinstance(error, Exception) and not self.stream.kept:
            self.call.failed()
            return
        self.call.finish_stream(self.stream, aborted=aborted)


async def _pump(send: Send, response: aiohttp.ClientResponse, sink: _Sink) -> None:
    """Relay the upstream body to the client chunk by chunk, through `sink`. A sink that `holds_last`
    (a JSON body, whose end the client can tell by its length) keeps one chunk back, so the call is
    queued for recording before the client has the whole body. A read that brings the body's end goes
    out with the end: one write, not two."""
    held = b""
    holds_last = sink.holds_last
    content = response.content
    read = content.readany
    while chunk := await read():
        out = sink.chunk(chunk)
        if content.at_eof():
            held += out
            break
        if not out:
            continue
        if holds_last:
            out, held = held, out
            if not out:
                continue
        await send({"type": "http.response.body", "body": out, "more_body": True})
    tail = held + sink.tail()
    sink.end(aborted=False)  # queued for recording before the client can see the end
    sink.complete = True
    await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _first_done(first: asyncio.Future[Any], second: asyncio.Future[Any]) -> None:
    """Return when either is done: `asyncio.wait((first, second), return_when=FIRST_COMPLETED)` without
    its sets and checks (a third of its CPU); neither is cancelled, nor its exception raised."""
    if first.done() or second.done():
        return
    waiter = first.get_loop().create_future()

    def wake(_: object) -> None:
        if not waiter.done():
            waiter.set_result(None)

    first.add_done_callback(wake)
    second.add_done_callback(wake)
    try:
        await waiter
    finally:
        first.remove_done_callback(wake)
        second.remove_done_callback(wake)


async def _disconnected(receive: Receive) -> None:
    """Return when the client disconnects (or the response is complete)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


# -- helpers -----------------------------------------------------------------------------------------------


async def _reply(send: Send, reply: ErrorReply) -> int:
    await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})
    return reply.status


def _json_reply(status: int, payload: dict[str, Any]) -> ErrorReply:
    body = json.dumps(payload).encode()
    return ErrorReply(status, [(b"content-type", b"application/json")], body)


class _ClientGone(Exception):
    """The client disconnected before its response began (answered with nothing; counted as 499)."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is over `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _drain_body(receive: Receive) -> None:
    """Read the request body to its end, keeping none of it."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        if not message.get("more_body", False):
            return


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1").strip() or None
    return None


def _attribution(headers: list[tuple[bytes, bytes]], key: VirtualKey | None) -> dict[str, Any] | None:
    """Scope values from the X-Tokentrail-* headers, with the virtual key's own winning (None: refused)."""
    values: dict[str, Any] = {}
    for name, value in headers:
        field_name = _ATTRIBUTION_HEADERS.get(name)
        if field_name is None:
            continue
        text = value.decode("latin-1").strip()
        if len(text) > _MAX_ATTRIBUTION or not (text.isascii() and text.isprintable()):
            return None
        if field_name == "tags":
            values["tags"] = tuple(t.strip() for t in text.split(",") if t.strip())
        elif text:
            values[field_name] = text
    if key is not None:
        given = key.attribution()
        for field_name in ("user", "agent"):
            if given[field_name] is not None:
                values[field_name] = given[field_name]
        values["tags"] = tuple(sorted({*values.get("tags", ()), *given["tags"]}))  # type: ignore[misc]
    return values


def _json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object ({} when it is not one: the upstream answers it as it will)."""
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _asked_usage(request: dict[str, Any]) -> bool:
    options = request.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _ask_usage(body: bytes, request: dict[str, Any]) -> bytes:
    """The body with `stream_options.include_usage` set; the rest of the bytes unchanged when possible."""
    if "stream_options" not in request:
        start = body.find(b"{")
        rest = body[start + 1 :].lstrip()
        separator = b"" if rest.startswith(b"}") else b","
        return body[: start + 1] + b'"stream_options":{"include_usage":true}' + separator + body[start + 1 :]
    options = request.get("stream_options")
    changed = {
        **request,
        "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True},
    }
    return json.dumps(changed).encode()


def _output_limit(request: dict[str, Any]) -> int | None:
    found = first_int(request)
    if found is not None:
        return found
    config = request.get("generationConfig")
    if isinstance(config, dict):
        limit = config.get("maxOutputTokens")
        if type(limit) is int and limit >= 0:
            return limit
    return None


def _refusal(api: str, exc: BudgetExceeded) -> ErrorReply:
    """HTTP 429 in the provider's shape; Retry-After when the window resets (and no SDK retry before it)."""
    headers: dict[str, str] = {}
    if exc.resets_at is not None:
        seconds = max(1, math.ceil((exc.resets_at - datetime.now(timezone.utc)).total_seconds()))
        headers["retry-after"] = str(seconds)
        if seconds > 60:
            headers["x-should-retry"] = "false"  # the openai/anthropic SDKs would retry sooner, in vain
    else:
        headers["x-should-retry"] = "false"
    return error_reply(
        api, 429, f"tokentrail budget exceeded: {exc}", code="budget_exceeded", headers=headers
    )
