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

__all__ = ["tap_body", "tap_items"]

logger = logging.getLogger("tokentrail.adapters")

_USAGE = b'"usage"'
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
            buffer = self.buffer + chunk if self.buffer else chunk
            start = 0
            while True:
                end, width = _event_end(buffer, start)
                if end < 0:
                    break
                self._event(buffer[start:end])
                start = end + width
            self.buffer = buffer[start:]
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
    """A JSON-lines listing of independently billed items (Message Batches results): each line the reader
    receives is recorded on its own (`Call.record_item`); its end records nothing more."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> None:
        try:
            lines = (self.buffer + chunk).split(b"\n")
            self.buffer = lines.pop()
            for line in lines:
                self._item(line)
        except Exception:
            logger.debug("tokentrail could not read a listed item", exc_info=True)

    def _item(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            item = json.loads(line)
        except ValueError:  # one unreadable line: the others are still items
            logger.debug("tokentrail could not decode a listed item", exc_info=True)
            return
        self.call.record_item(item)

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


def tap_items(call: Call, http_response: Any, *, asynchronous: bool) -> None:
    """Record each JSON line of `http_response`'s body as its reader consumes it (see `_ItemsTap`)."""
    if call.begin_items():
        _install(_ItemsTap(call, None), http_response, asynchronous=asynchronous)


def _install(tap: _Tap, http_response: Any, *, asynchronous: bool) -> None:
    if asynchronous:
        http_response.aiter_bytes = _async_reader(tap, http_response.aiter_bytes)
        http_response.aclose = _async_closer(tap, http_response.aclose)
    else:
        http_response.iter_bytes = _sync_reader(tap, http_response.iter_bytes)
        http_response.close = _closer(tap, http_response.close)
    # closed or dropped without being read to its end: record what was seen
    weakref.finalize(http_response, _Tap.end, tap, aborted=True)
