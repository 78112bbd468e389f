"""The tracking state of one instrumented call, and the stream proxies that record a stream once it ends.

A `Call` runs from the request to its one record. Streams are handed back inside a thin proxy that
iterates, closes and works as a (sync or async) context manager exactly like the SDK's stream, feeding
each event to a stream accumulator; it records once: at the end of the stream (complete usage), or when
it is closed early, broken out of and collected, raises, or its asyncio task is cancelled (`partial`:
what was seen). A stream that fails before its first event is a failed call: no record.

On the caller's thread a call only takes its timestamps, reserves budget room and, once the response
(or the end of the stream) is there, hands it to its tracker's capture queue with a copy of the
caller's context (scope, active reservation). Reading the usage, pricing, recording, settling the
reservation and running the sinks happen on the capture worker (`tokentrail._capture`), or at once on
the caller's thread when the tracker captures synchronously (`Tracker(capture="sync")`) or is not a
`Tracker` (any object with `record()`).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tokentrail._claims import mark_otel_span
from tokentrail._types import Usage
from tokentrail.adapters._base import Captured, Malformed, Scoped, StreamAccumulator
from tokentrail.errors import BudgetExceeded

if TYPE_CHECKING:
    from tokentrail._capture import CaptureQueue
    from tokentrail.adapters._instrument_target import Request, Target

__all__ = [
    "Call",
    "TrackedAsyncStream",
    "TrackedStream",
    "inside_tracked_call",
    "tracking_call",
]

logger = logging.getLogger("tokentrail.adapters")

# set while a tracked call that records at its own level runs (LiteLLM's `completion`): the SDK calls made
# inside it (LiteLLM calling the `openai` SDK) are part of that call and pass untracked
_TRACKING: contextvars.ContextVar[bool] = contextvars.ContextVar("tokentrail_tracking_call", default=False)


def inside_tracked_call() -> bool:
    """Whether this code runs inside a call that is already being recorded (see `tracking_call`)."""
    return _TRACKING.get()


@contextlib.contextmanager
def tracking_call() -> Iterator[None]:
    """Mark the calls made inside this block as part of the one tracked call around them."""
    token = _TRACKING.set(True)
    try:
        yield
    finally:
        _TRACKING.reset(token)


_TTFT_SUPPORT: dict[type, bool] = {}


def _accepts_ttft(tracker: Any) -> bool:
    """Whether `tracker.record` takes `ttft_ms=` (looked up once per tracker class)."""
    kind = type(tracker)
    known = _TTFT_SUPPORT.get(kind)
    if known is None:
        try:
            parameters = inspect.signature(kind.record).parameters
            known = "ttft_ms" in parameters or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
            )
        except (TypeError, ValueError, AttributeError):
            known = False
        _TTFT_SUPPORT[kind] = known
    return known


_READERS: dict[str, Any] = {}


def _reader(adapter: str) -> Any:
    """The function an adapter name stands for: "module" (its `extract`) or "module:function", under
    `tokentrail.adapters` (a response's reader, or a listed item's, which returns None when not billed)."""
    reader = _READERS.get(adapter)
    if reader is None:
        module_name, _, function = adapter.partition(":")
        module = importlib.import_module(f"tokentrail.adapters.{module_name}")
        reader = _READERS[adapter] = getattr(module, function or "extract")
    return reader


def _capture(adapter: str | None, response: object, provider: str) -> Captured | tuple[Captured, ...]:
    """What the response reveals. The SDK's response type is known here, so its adapter reads it
    directly; anything that adapter cannot read goes through `capture()`, which detects what it is and
    says why usage is unknown. A run that reports usage per model reads as one capture per model."""
    if adapter is not None:
        extract: Callable[[object, str], Captured | tuple[Captured, ...]] = _reader(adapter)
        try:
            return extract(response, provider)
        except Malformed as exc:
            if ":" in adapter:  # an endpoint's own reader: its reason is the answer
                return Captured(Usage.unknown(exc.reason), None, provider)
            logger.debug("%s adapter could not read a response; detecting it", adapter, exc_info=True)
        except Exception:
            logger.debug("%s adapter could not read a response; detecting it", adapter, exc_info=True)
    from tokentrail.adapters import capture

    return capture(response, provider)


def _estimate_input(kwargs: Mapping[str, Any], model: str | None) -> int:
    """A local count of the prompt (0 when it cannot be counted cheaply)."""
    if not model:
        return 0
    try:
        from tokentrail.tokens.count import count_tokens

        total = 0
        for key in ("messages", "input", "contents", "prompt"):
            value = kwargs.get(key)
            if isinstance(value, (str, list)):
                total += count_tokens(value, model)
        system = kwargs.get("system") or kwargs.get("instructions")
        if isinstance(system, list):  # Anthropic content blocks: their texts
            system = "\n".join(
                b["text"] for b in system if isinstance(b, dict) and isinstance(b.get("text"), str)
            )
        if isinstance(system, str):
            total += count_tokens(system, model)
        return total
    except Exception:
        logger.debug("could not count the prompt for a budget reservation", exc_info=True)
        return 0


class Call:
    """The tracking state of one SDK call, from the request to its record."""

    __slots__ = (
        "adapter",
        "captures",
        "context",
        "done",
        "ended",
        "ended_ns",
        "first_token_at",
        "is_content",
        "model",
        "once",
        "provider",
        "reservation",
        "scope",
        "started",
        "stream_reader",
        "target",
        "tracker",
    )

    def __init__(self, tracker: Any, target: Target, provider: str, model: str | None) -> None:
        self.tracker = tracker
        self.target = target
        self.adapter = (
            target.adapter
        )  # the adapter module reading its responses (per endpoint for HTTP clients)
        self.is_content: Callable[[object], bool] = target.is_content  # marks the first token of a stream
        self.provider = provider
        self.model = model
        self.once: Callable[[Captured], bool] | None = None  # says False for a response recorded already
        self.stream_reader: str | None = None  # "module:Class" for streams format detection cannot read
        self.scope: str | None = None  # the request path, handed to readers that take it (`Scoped`)
        self.reservation: Any = None
        self.captures: CaptureQueue | None = None  # None: record on this thread
        self.context: contextvars.Context | None = None
        self.done = False
        self.first_token_at: float | None = None
        self.ended = 0.0
        self.ended_ns = 0
        self.started = time.perf_counter()

    @classmethod
    def start(cls, target: Target, tracker: Any, resource: Any, request: Request) -> Call:
        """Begin tracking; reserves budget room first (and raises `BudgetExceeded` when there is none)."""
        try:
            call = cls(tracker, target, target.provider_of(resource, request.model), request.model)
            mark_otel_span()  # an OTel span around this call describes it: OTLP ingest skips it
            settings = getattr(tracker, "_call_settings", None)
            if settings is not None:
                call.captures, reserve = settings()
            else:  # any object with record(): recorded on this thread
                reserve = getattr(tracker, "budgets", None) is not None
        except Exception:
            logger.debug("tokentrail could not start tracking a call", exc_info=True)
            call = cls(None, target, target.provider, None)
            call.done = True
            return call
        if reserve and target.reserves(request):
            call._reserve(request)
            call.started = time.perf_counter()
        return call

    def _reserve(self, request: Request) -> None:
        try:
            self.reservation = self.tracker.reserve(
                self.model,
                self.provider,
                input_tokens=_estimate_input(self.target.body(request), self.model),
                max_output_tokens=self.target.output_limit(request),
            )
        except BudgetExceeded:
            raise
        except Exception:
            logger.debug("tokentrail could not reserve budget for a call", exc_info=True)

    def discard(self) -> None:
        """Stop tracking without a record (another wrapper records this call)."""
        if not self.done:
            self.done = True
            if self.reservation is not None:
                try:
                    self.reservation.release()
                except Exception:
                    logger.debug("tokentrail could not release a reservation", exc_info=True)

    def failed(self) -> None:
        """The request raised: no record; give the reserved room back and count the error."""
        if self.done:
            return
        self.done = True
        try:
            if self.reservation is not None:
                self.reservation.release()
            count = getattr(self.tracker, "_count", None)
            if count is not None:
                count("call_errors")
        except Exception:
            logger.debug("tokentrail could not account for a failed call", exc_info=True)

    def finish_response(self, response: object) -> None:
        """The response is there: record it (on the capture worker, or here)."""
        if self.done:
            return
        self.ended = time.perf_counter()
        self.ended_ns = time.time_ns()
        self.done = True
        captures = self.captures
        if captures is None:
            self._record_response(response)
            return
        try:
            captures.submit(contextvars.copy_context(), self._record_response, response)
        except Exception:
            logger.debug("tokentrail could not queue a call; recording it here", exc_info=True)
            self._record_response(response)

    def _record_response(self, response: object) -> None:
        try:
            if isinstance(response, _RawBody):
                response = response.decode()
            if self.scope is not None and not isinstance(response, Captured):
                response = Scoped(self.scope, response)
            captured = (
                response
                if isinstance(response, Captured)
                else _capture(self.adapter, response, self.provider)
            )
            if isinstance(captured, tuple):  # a run reporting usage per model: one record each
                for each in captured:
                    self._record(each)
                return
            self._record(captured)
        except Exception:
            self._record_failed("could not record a call")

    def finish_body(self, content: bytes | list[bytes]) -> None:
        """A raw JSON response body is there (read by the caller, whole or in chunks): record it, decoded
        off the caller's path."""
        self.finish_response(_RawBody(content))

    def finish_unread(self, reason: str) -> None:
        """The response was closed before its body could be read: record the call as `unknown`."""
        self.finish_response(Captured(Usage.unknown(reason), self.model, self.provider))

    def new_accumulator(self) -> StreamAccumulator:
        """The accumulator for this call's stream: the endpoint's own, or one that detects the format."""
        if self.stream_reader is not None:
            accumulator: StreamAccumulator = _reader(self.stream_reader)(self.provider)
            return accumulator
        from tokentrail.adapters.streams import stream_accumulator

        return stream_accumulator(self.provider)

    def keep_context(self) -> None:
        """Record in the caller's context as it is now (a stream read later, elsewhere)."""
        self.context = contextvars.copy_context()

    def _record_failed(self, what: str) -> None:
        logger.debug("tokentrail %s", what, exc_info=True)
        try:
            count = getattr(self.tracker, "_count", None)
            if count is not None:
                count("capture_errors")
        except Exception:
            logger.debug("tokentrail could not count a capture error", exc_info=True)

    def tracked_stream(self, stream: Any, *, asynchronous: bool) -> Any:
        try:
            accumulator = self.new_accumulator()
            self.context = contextvars.copy_context()
        except Exception:
            logger.debug("tokentrail could not track a stream", exc_info=True)
            self.failed()
            return stream
        if asynchronous:
            return TrackedAsyncStream(stream, self, accumulator)
        return TrackedStream(stream, self, accumulator)

    def tracked_items(self, items: Any, *, asynchronous: bool) -> Any:
        """A listing of independently billed items (Message Batches results): each item the caller reads is
        recorded on its own (`record_item`)."""
        if not self.begin_items():
            return items
        if asynchronous:
            return TrackedAsyncItems(items, self, _NO_ACCUMULATOR)
        return TrackedItems(items, self, _NO_ACCUMULATOR)

    def begin_items(self) -> bool:
        """Track a listing of billed items, recorded in the caller's context as it is now (no budget is held
        for a listing: `Target.reserves`); False when it cannot be tracked."""
        try:
            self.context = contextvars.copy_context()
            return True
        except Exception:
            logger.debug("tokentrail could not track a listing", exc_info=True)
            self.failed()
            return False

    def record_item(self, item: object) -> None:
        """One item of a listing was read: record it (on the capture worker, or here), the call stays open."""
        if self.done:
            return
        self.ended = time.perf_counter()
        self.ended_ns = time.time_ns()  # also marks that an item was seen
        if not self._queue(self._record_item, item):
            self._record_item(item)

    def finish_items_body(self, content: bytes, sniff: Callable[[bytes], bool] | None) -> None:
        """A JSON-lines listing read whole already (a file's content): each line recorded as an item, decoded
        on the capture worker; nothing when `sniff` says the first line is no item."""
        if self.done or not self.begin_items():
            return
        self.ended = time.perf_counter()
        self.ended_ns = time.time_ns()
        self.done = True
        if not self._queue(self._record_lines, (content, sniff)):
            self._record_lines((content, sniff))

    def _record_lines(self, body: tuple[bytes, Callable[[bytes], bool] | None]) -> None:
        from tokentrail.adapters._body_tap import decoded_lines

        for item in decoded_lines(*body):
            self._record_item(item)

    def _queue(self, record: Callable[[Any], None], argument: object) -> bool:
        """Hand `record(argument)` to the capture worker in the call's context; False when it runs here."""
        captures = self.captures
        if captures is None:
            return False
        try:
            context = self.context if self.context is not None else contextvars.copy_context()
            captures.submit(context, record, argument)
            return True
        except Exception:
            logger.debug("tokentrail could not queue a capture; recording it here", exc_info=True)
            return False

    def _record_item(self, item: object) -> None:
        try:
            if self.scope is not None:
                item = Scoped(self.scope, item)
            captured = _reader(self.adapter or "")(item, self.provider)
            if isinstance(captured, tuple):  # an item reporting several records (or none)
                for each in captured:
                    self._record(each)
            elif captured is not None:  # None: an item that is not billed (an errored batch result)
                self._record(captured)
        except Exception:
            self._record_failed("could not record a listed item")

    def finish_stream(self, accumulator: StreamAccumulator, *, aborted: bool) -> None:
        """The stream ended (or was left): record what it reported, in the scope it was opened in."""
        if self.done:
            return
        self.ended = time.perf_counter()
        self.ended_ns = time.time_ns()
        self.done = True
        if self._queue(self._record_stream, (accumulator, aborted)):
            return
        if self.context is None:
            self._record_stream((accumulator, aborted))
            return
        try:
            self.context.run(self._record_stream, (accumulator, aborted))  # the caller's scope
        except RuntimeError:  # that context is entered right now (a collection inside it)
            self._record_stream((accumulator, aborted))

    def _record_stream(self, ending: tuple[StreamAccumulator, bool]) -> None:
        accumulator, aborted = ending
        try:
            accumulator.close(aborted=aborted)
            self._record(accumulator.captured())
        except Exception:
            self._record_failed("could not record a stream")

    def _record(self, captured: Captured) -> None:
        once = self.once
        if once is not None and not once(captured):
            if self.reservation is not None:
                self.reservation.release()
            return
        tracker = self.tracker
        price_context = captured.price_context
        keywords: dict[str, Any] = {
            "provider": captured.provider if captured.provider != "unknown" else self.provider,
            "duration_ms": (self.ended - self.started) * 1000.0,
            "provider_cost": captured.provider_cost,
            "context": dict(price_context) if price_context else None,
        }
        if self.first_token_at is not None and _accepts_ttft(tracker):
            keywords["ttft_ms"] = (self.first_token_at - self.started) * 1000.0
        record = getattr(tracker, "_record_now", None)  # a Tracker: the capture itself, no drain
        if record is None:
            record = tracker.record
        else:
            keywords["timestamp_us"] = self.ended_ns // 1000
        model = captured.model or self.model
        if self.reservation is None:
            record(captured.usage, model, **keywords)
            return
        with self.reservation:  # a record made inside settles it; a failure releases it
            record(captured.usage, model, **keywords)


class _RawBody:
    """A JSON response body as bytes, decoded on the capture worker rather than on the caller's thread."""

    __slots__ = ("content",)

    def __init__(self, content: bytes | list[bytes]) -> None:
        self.content = content

    def decode(self) -> object:
        import json

        content = self.content
        try:
            return json.loads(content if isinstance(content, bytes) else b"".join(content))
        except ValueError:
            return Captured(Usage.unknown("the response body is not JSON"), None, "unknown")


# -- stream proxies --------------------------------------------------------------------------------------------


def _is_failure(error: BaseException | None) -> bool:
    """An exception that means the request failed (not the reader stopping or being cancelled)."""
    return isinstance(error, Exception)


class _StreamProxy:
    """What the sync and async proxies share: event feeding, finishing, attribute forwarding."""

    __slots__ = ("__weakref__", "_tt_accumulator", "_tt_call", "_tt_stream")

    def __init__(self, stream: Any, call: Call, accumulator: StreamAccumulator) -> None:
        self._tt_stream = stream
        self._tt_call = call
        self._tt_accumulator = accumulator

    def _tt_feed(self, event: object) -> None:
        call = self._tt_call
        try:
            if call.first_token_at is None and call.is_content(event):
                call.first_token_at = time.perf_counter()
            self._tt_accumulator.feed(event)
        except Exception:
            logger.debug("tokentrail could not read a stream event", exc_info=True)

    def _tt_finish(self, *, aborted: bool, error: BaseException | None = None) -> None:
        call = self._tt_call
        if _is_failure(error) and self._tt_accumulator.events == 0:
            call.failed()  # the request itself failed (lazy streams raise at their first read)
            return
        call.finish_stream(self._tt_accumulator, aborted=aborted)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tt_stream, name)

    def __repr__(self) -> str:
        return f"<tracked {self._tt_stream!r}>"

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._tt_finish(aborted=True)


class TrackedStream(_StreamProxy):
    """A sync stream (SDK `Stream`, generator, boto3 `EventStream`), unchanged to its reader."""

    __slots__ = ("_tt_next",)

    def __init__(self, stream: Any, call: Call, accumulator: StreamAccumulator) -> None:
        super().__init__(stream, call, accumulator)
        self._tt_next: Callable[[], Any] | None = None

    def __iter__(self) -> TrackedStream:
        return self

    def __next__(self) -> Any:
        step = self._tt_next
        if step is None:
            stream = self._tt_stream
            step = self._tt_next = stream.__next__ if hasattr(stream, "__next__") else iter(stream).__next__
        try:
            event = step()
        except StopIteration:
            self._tt_finish(aborted=False)
            raise
        except BaseException as error:
            self._tt_finish(aborted=True, error=error)
            raise
        self._tt_feed(event)
        return event

    def __enter__(self) -> TrackedStream:
        enter = getattr(self._tt_stream, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            exit_ = getattr(self._tt_stream, "__exit__", None)
            return None if exit_ is None else exit_(*exc_info)
        finally:
            self._tt_finish(aborted=True)

    def close(self) -> None:
        try:
            close = getattr(self._tt_stream, "close", None)
            if close is not None:
                close()
        finally:
            self._tt_finish(aborted=True)


class TrackedAsyncStream(_StreamProxy):
    """An async stream (SDK `AsyncStream`, async generator), unchanged to its reader."""

    __slots__ = ("_tt_anext",)

    def __init__(self, stream: Any, call: Call, accumulator: StreamAccumulator) -> None:
        super().__init__(stream, call, accumulator)
        self._tt_anext: Callable[[], Any] | None = None

    def __aiter__(self) -> TrackedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        step = self._tt_anext
        if step is None:
            stream = self._tt_stream
            step = self._tt_anext = (
                stream.__anext__ if hasattr(stream, "__anext__") else stream.__aiter__().__anext__
            )
        try:
            event = await step()
        except StopAsyncIteration:
            self._tt_finish(aborted=False)
            raise
        except BaseException as error:  # errors and cancellation: record what was seen
            self._tt_finish(aborted=True, error=error)
            raise
        self._tt_feed(event)
        return event

    async def __aenter__(self) -> TrackedAsyncStream:
        enter = getattr(self._tt_stream, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            exit_ = getattr(self._tt_stream, "__aexit__", None)
            return None if exit_ is None else await exit_(*exc_info)
        finally:
            self._tt_finish(aborted=True)

    async def _tt_close(self, *names: str) -> None:
        try:
            for name in names:
                close = getattr(self._tt_stream, name, None)
                if close is not None:
                    await close()
                    return
        finally:
            self._tt_finish(aborted=True)

    async def close(self) -> None:
        await self._tt_close("close", "aclose")

    async def aclose(self) -> None:
        await self._tt_close("aclose", "close")


# -- listings of independently billed items ---------------------------------------------------------------------

_NO_ACCUMULATOR: Any = None  # item proxies record each item themselves and keep no stream accumulator


class _ItemsProxy(_StreamProxy):
    """What the item proxies change: each item is recorded as it is read; the end records nothing more."""

    __slots__ = ()

    def _tt_feed(self, event: object) -> None:
        try:
            self._tt_call.record_item(event)
        except Exception:
            logger.debug("tokentrail could not read a listed item", exc_info=True)

    def _tt_finish(self, *, aborted: bool, error: BaseException | None = None) -> None:
        call = self._tt_call
        if _is_failure(error) and call.ended_ns == 0:
            call.failed()  # the request failed before its first item
            return
        call.discard()


class TrackedItems(_ItemsProxy, TrackedStream):
    """A sync listing (the SDK's `JSONLDecoder`), unchanged to its reader; each item recorded as read."""

    __slots__ = ()


class TrackedAsyncItems(_ItemsProxy, TrackedAsyncStream):
    """An async listing (the SDK's `AsyncJSONLDecoder`), unchanged to its reader; each item recorded as read."""

    __slots__ = ()
