"""Watch a raw HTTP response body as its reader consumes it: how `with_raw_response` streams and
`with_streaming_response` calls are tracked without changing what the caller reads.

The tap replaces the httpx response's `iter_bytes` (`aiter_bytes`) on that one response object: every
way of reading the body goes through it — the SDK's `Stream` built by `.parse()`, `iter_lines()`,
`iter_text()`, `read()` — and sees the decoded bytes as they pass, chunk by chunk. Server-sent events
are split as they arrive; only the events that carry usage (and the first one, for the model) are
decoded, so a long stream costs a byte search per event. A JSON body is kept as the chunks the reader
already received (references, not copies) and joined and decoded once, on the capture worker, when
it ends. The call is recorded when the
body has been read to its end (complete), when the reader stops early or the response is closed or
collected unread (what was seen: partial, or unknown with the reason).
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokentrail.adapters._base import StreamAccumulator
    from tokentrail.adapters._instrument_call import Call

__all__ = ["decoded_lines", "tap_body", "tap_events", "tap_items"]

logger = logging.getLogger("tokentrail.adapters")

_USAGE = b'"usage"'
_SNIFF_BYTES = 65_536  # how much of a first line without its end is enough to tell whether it is an item
_DELTA = b'delta"'


class _Tap:
    """What one tapped body has shown so far, and the call it ends."""

    __slots__ = ("__weakref__", "accumulator", "buffer", "call", "chunks", "ended", "first", "reading")

    def __init__(self, call: Call, accumulator: StreamAccumulator | None) -> None:
        self.call = call
        self.accumulator = accumulator  # None: a JSON body, kept whole
        self.buffer = b""
        self.chunks: list[bytes] = []
        self.first = True
        self.ended = False
        self.reading = False  # the reader is waiting for the next chunk (the body's own end closes it)

    def feed(self, chunk: bytes) -> None:
        try:
            if self.accumulator is None:
                self.chunks.append(chunk)
                return
            self.buffer = _each_event(self.buffer + chunk if self.buffer else chunk, self._event)
        except Exception:
            logger.debug("tokentrail could not read a response body chunk", exc_info=True)

    def _event(self, block: bytes) -> None:
        if not block.strip():
            return
        accumulator = self.accumulator
        assert accumulator is not None
        call = self.call
        if call.first_token_at is None and _DELTA in block:
            call.first_token_at = time.perf_counter()
        if self.first or _USAGE in block:
            self.first = False
            accumulator.feed(block)
        else:
            accumulator.feed(b"")  # counted as an event; nothing in it to read

    def end(self, *, aborted: bool, error: BaseException | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        call = self.call
        try:
            if self.accumulator is None:
                if aborted:
                    call.finish_unread("the response body was not read to its end")
                else:  # the chunks the reader received, joined on the capture worker
                    call.finish_body(self.chunks)
                self.chunks = []
                return
            if self.buffer.strip():
                self._event(self.buffer)
                self.buffer = b""
            if isinstance(error, Exception) and self.accumulator.events == 0:
                call.failed()
                return
            call.finish_stream(self.accumulator, aborted=aborted)
        except Exception:
            logger.debug("tokentrail could not finish a tapped response", exc_info=True)


class _ItemsTap(_Tap):
    """A JSON-lines listing of independently billed items (Message Batches results, a Batch output file):
    each line the reader receives is recorded on its own (`Call.record_item`); its end records nothing more.
    With a `sniff`, a body whose first line fails it is no listing: the rest passes unread."""

    __slots__ = ("sniff",)

    def __init__(self, call: Call, sniff: Callable[[bytes], bool] | None) -> None:
        super().__init__(call, None)
        self.sniff = sniff

    def feed(self, chunk: bytes) -> None:
        if self.ended:
            return
        try:
            lines = (self.buffer + chunk).split(b"\n")
            self.buffer = lines.pop()
            long_first = self.sniff is not None and not lines and len(self.buffer) > _SNIFF_BYTES
            if long_first and not self._listing(self.buffer):  # its start tells what the body is
                return
            for line in lines:
                self._item(line)
                if self.ended:
                    return
        except Exception:
            logger.debug("tokentrail could not read a listed item", exc_info=True)

    def _item(self, line: bytes) -> None:
        if not line.strip() or (self.sniff is not None and not self._listing(line)):
            return
        item = _decoded(line)
        if item is not None:
            self.call.record_item(item)

    def _listing(self, first: bytes) -> bool:
        """Whether the body whose first line starts with `first` is a listing; if not, stop reading it."""
        sniff = self.sniff
        self.sniff = None
        if sniff is None or sniff(first[:_SNIFF_BYTES]):
            return True
        self.buffer = b""
        self.ended = True
        self.call.discard()
        return False

    def end(self, *, aborted: bool, error: BaseException | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        call = self.call
        try:
            if not aborted and self.buffer.strip():
                self._item(self.buffer)
            self.buffer = b""
            if isinstance(error, Exception) and call.ended_ns == 0:
                call.failed()  # the request failed before its first item
                return
            call.discard()
        except Exception:
            logger.debug("tokentrail could not finish a tapped listing", exc_info=True)


class _EventItemsTap(_ItemsTap):
    """A server-sent event stream of which some events are independently billed items (a managed agent
    session's completed turns and model requests): each event holding one of `markers` is decoded and
    recorded on its own as the reader receives it; the others pass with a byte search each."""

    __slots__ = ("markers",)

    def __init__(self, call: Call, markers: tuple[bytes, ...]) -> None:
        super().__init__(call, None)
        self.markers = markers

    def feed(self, chunk: bytes) -> None:
        if self.ended:
            return
        try:
            self.buffer = _each_event(self.buffer + chunk if self.buffer else chunk, self._item)
        except Exception:
            logger.debug("tokentrail could not read a stream event", exc_info=True)

    def _item(self, block: bytes) -> None:
        if not any(marker in block for marker in self.markers):
            return
        from tokentrail.adapters._base import Malformed, decode_event

        try:
            event = decode_event(block)
        except Malformed:
            logger.debug("tokentrail could not decode a stream event", exc_info=True)
            return
        if event is not None:
            self.call.record_item(event)


def _decoded(line: bytes) -> object | None:
    """One JSON line as an object; None for a blank or unreadable line (the others are still items)."""
    if not line.strip():
        return None
    try:
        item: object = json.loads(line)
    except ValueError:
        logger.debug("tokentrail could not decode a listed item", exc_info=True)
        return None
    return item


def decoded_lines(content: bytes, sniff: Callable[[bytes], bool] | None) -> Iterator[object]:
    """The items of a JSON-lines body read whole; none when `sniff` says its first line is no item."""
    if sniff is not None and not sniff(content[:_SNIFF_BYTES].lstrip().split(b"\n", 1)[0]):
        return
    for line in content.splitlines():
        item = _decoded(line)
        if item is not None:
            yield item


def _each_event(buffer: bytes, handle: Callable[[bytes], None]) -> bytes:
    """Hand each whole server-sent event in `buffer` to `handle`; returns the rest (an event not yet ended)."""
    start = 0
    while True:
        end, width = _event_end(buffer, start)
        if end < 0:
            return buffer[start:]
        handle(buffer[start:end])
        start = end + width


def _event_end(buffer: bytes, start: int) -> tuple[int, int]:
    """Where the server-sent event starting at `start` ends, and the width of the blank line after it."""
    lf = buffer.find(b"\n\n", start)
    crlf = buffer.find(b"\r\n\r\n", start)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return lf, (2 if lf >= 0 else 0)


def _sync_reader(tap: _Tap, original: Callable[..., Iterator[bytes]]) -> Callable[..., Iterator[bytes]]:
    def iter_bytes(chunk_size: int | None = None) -> Iterator[bytes]:
        chunks = original(chunk_size)
        try:
            while True:
                tap.reading = True
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                finally:
                    tap.reading = False
                tap.feed(chunk)
                yield chunk
        except GeneratorExit:
            tap.end(aborted=True)
            raise
        except BaseException as error:
            tap.end(aborted=True, error=error)
            raise
        tap.end(aborted=False)

    return iter_bytes


def _async_reader(
    tap: _Tap, original: Callable[..., AsyncIterator[bytes]]
) -> Callable[..., AsyncIterator[bytes]]:
    async def aiter_bytes(chunk_size: int | None = None) -> AsyncIterator[bytes]:
        chunks = original(chunk_size)
        try:
            while True:
                tap.reading = True
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    tap.reading = False
                tap.feed(chunk)
                yield chunk
        except GeneratorExit:
            tap.end(aborted=True)
            raise
        except BaseException as error:
            tap.end(aborted=True, error=error)
            raise
        tap.end(aborted=False)

    return aiter_bytes


def _closer(tap: _Tap, original: Callable[[], Any]) -> Callable[[], Any]:
    """`close` / `aclose`: closed by the caller before the body's end, the call ends with what was seen."""

    def close() -> Any:
        try:
            return original()
        finally:
            if not tap.reading:  # not the body's own end closing it from inside a read
                tap.end(aborted=True)

    return close


def _async_closer(tap: _Tap, original: Callable[[], Any]) -> Callable[[], Any]:
    async def aclose() -> Any:
        try:
            return await original()
        finally:
            if not tap.reading:
                tap.end(aborted=True)

    return aclose


def tap_body(call: Call, http_response: Any, *, events: bool, asynchronous: bool) -> None:
    """Record `call` from `http_response`'s body as its reader consumes it (`events`: server-sent events)."""
    accumulator = None
    if events:
        accumulator = call.new_accumulator()
        call.keep_context()
    _install(_Tap(call, accumulator), http_response, asynchronous=asynchronous)


def tap_items(
    call: Call,
    http_response: Any,
    *,
    asynchronous: bool,
    sniff: Callable[[bytes], bool] | None = None,
) -> None:
    """Record each JSON line of `http_response`'s body as its reader consumes it (see `_ItemsTap`)."""
    if call.begin_items():
        _install(_ItemsTap(call, sniff), http_response, asynchronous=asynchronous)


def tap_events(call: Call, http_response: Any, *, asynchronous: bool, markers: tuple[bytes, ...]) -> None:
    """Record each server-sent event of `http_response`'s body that holds one of `markers`, as its reader
    consumes it (see `_EventItemsTap`)."""
    if call.begin_items():
        _install(_EventItemsTap(call, markers), http_response, asynchronous=asynchronous)


def _install(tap: _Tap, http_response: Any, *, asynchronous: bool) -> None:
    if asynchronous:
        http_response.aiter_bytes = _async_reader(tap, http_response.aiter_bytes)
        http_response.aclose = _async_closer(tap, http_response.aclose)
    else:
        http_response.iter_bytes = _sync_reader(tap, http_response.iter_bytes)
        http_response.close = _closer(tap, http_response.close)
    # closed or dropped without being read to its end: record what was seen
    weakref.finalize(http_response, _Tap.end, tap, aborted=True)
