"""What the gateway does with an event stream as it passes: split it into server-sent events, keep the
ones that can carry usage (undecoded), and, for an OpenAI chat stream whose usage the gateway asked
for, hold back the usage chunk the client did not ask for.

Nothing is decoded on the event loop: the kept events (the first one, for the model, and those that
name usage) are references to the bytes that passed, fed to the provider's stream accumulator on the
capture worker when the call is recorded (`DeferredStream.close`).

Gemini's `streamGenerateContent` without `alt=sse` streams one JSON array of response chunks
(`[{…},\r\n{…}]`); `ArrayStream` keeps the bytes and reads the array's elements in order there too
(a cut-off array: the elements that arrived whole).
"""

from __future__ import annotations

import json
import re

from tokentrail._types import Usage
from tokentrail.adapters._base import Captured, StreamAccumulator

__all__ = ["ArrayStream", "DeferredStream", "EventSplitter", "LastEvent", "strip_usage", "strip_usage_all"]

_USAGE = b'"usage'  # "usage" (OpenAI, Anthropic) and "usageMetadata" (Gemini)
_NO_USAGE = re.compile(rb'"usage"\s*:\s*null')
_USAGE_ONLY = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_NULL_USAGE_FIELD = re.compile(rb',\s*"usage"\s*:\s*null|"usage"\s*:\s*null\s*,')
_NULL_USAGE = b'"usage":null'
_COMPACT_NULL_USAGE = b',"usage":null'


class DeferredStream(StreamAccumulator):
    """A stream accumulator that keeps the events it is given and reads them only when closed (on the
    capture worker), through the provider's own accumulator."""

    def __init__(self, inner: StreamAccumulator) -> None:
        super().__init__(inner.provider)
        self.inner = inner
        self.kept: list[bytes] = []

    def take(self, event: bytes) -> None:
        """One whole event went by: count it, and keep it when it may carry the model or usage."""
        self.take_all([event], None)

    def take_all(self, events: list[bytes], last: LastEvent | None) -> bool:
        """`take` each event up to the stream's last one (what `last` matches); True when it was among
        them (one call per chunk, not per event)."""
        kept = self.kept
        count = self.events
        for event in events:  # find, not `in`: Python 3.11 makes an exception per bytes `in` test
            count += 1
            if count == 1 or (  # most events, OpenAI's with "usage":null, are ruled out by the first search
                event.find(_NULL_USAGE) < 0 and event.find(_USAGE) >= 0 and _NO_USAGE.search(event) is None
            ):
                kept.append(event)
            if last is not None and event.find(last.marker) >= 0 and last.pattern.search(event) is not None:
                self.events = count
                return True
        self.events = count
        return False

    def close(self, *, aborted: bool = False) -> None:
        super().close(aborted=aborted)
        inner = self.inner
        for event in self.kept:
            inner.feed(event)
        self.kept = []
        inner.events = self.events
        inner.close(aborted=aborted)

    def usage(self) -> Usage:
        return self.inner.usage()

    def captured(self) -> Captured:
        return self.inner.captured()

    def _feed(self, event: object) -> None:
        """Events arrive through `take`, undecoded."""

    def _seen(self) -> Usage | None:
        return None


class ArrayStream(DeferredStream):
    """A stream sent as one JSON array of chunks: the bytes kept as they pass, the elements fed to the
    provider's accumulator when closed (on the capture worker)."""

    def take(self, event: bytes) -> None:
        self.kept.append(event)

    def close(self, *, aborted: bool = False) -> None:
        StreamAccumulator.close(self, aborted=aborted)
        inner = self.inner
        text = b"".join(self.kept).decode("utf-8", errors="replace")
        self.kept = []
        elements, problem = _array_elements(text)
        for element in elements:
            inner.feed(element)
        if problem is not None and not aborted:
            inner.problem = problem
        self.events = inner.events
        inner.close(aborted=aborted)


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[\s,]*")


def _array_elements(text: str) -> tuple[list[object], str | None]:
    """The whole elements of a JSON array, in order, and what was wrong with the text (None: nothing)."""
    start = _SPACE.match(text, 0)
    position = start.end() if start else 0
    if not text.startswith("[", position):
        return [], "the streamed body is not a JSON array"
    position += 1
    elements: list[object] = []
    while True:
        position = _SPACE.match(text, position).end()  # type: ignore[union-attr]
        if position >= len(text):
            return elements, "the JSON array ended before its closing bracket"
        if text[position] == "]":
            return elements, None
        try:
            element, position = _DECODER.raw_decode(text, position)
        except ValueError:
            return elements, f"element {len(elements)} of the streamed JSON array is not JSON"
        elements.append(element)


class LastEvent:
    """What marks a stream's last event: a regex, tried only on events that hold `marker` (a literal every
    match holds), so most events cost one substring search instead of a regex scan (`take_all`)."""

    __slots__ = ("marker", "pattern")

    def __init__(self, marker: bytes, regex: str) -> None:
        self.marker = marker
        self.pattern = re.compile(regex.encode(), re.MULTILINE)


class EventSplitter:
    """Cuts a byte stream into whole server-sent events (each with its blank-line terminator: the first
    `\n\n` or `\r\n\r\n` after its start)."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def split(self, chunk: bytes) -> list[bytes]:
        buffer = self.buffer + chunk if self.buffer else chunk
        if buffer.find(b"\r") < 0:  # the usual stream, `\n` line ends only: one C pass (`\r` is a memchr)
            parts = buffer.split(b"\n\n")
            self.buffer = parts.pop()
            return [part + b"\n\n" for part in parts]
        events = []
        start = 0
        # the next of each terminator at or after `start`, searched again only once passed (-1: none left),
        # so a buffer of many events is scanned once, not once per event
        lf = buffer.find(b"\n\n")
        crlf = buffer.find(b"\r\n\r\n")
        while True:
            if crlf >= 0 and (lf < 0 or crlf < lf):
                end = crlf + 4
            elif lf >= 0:
                end = lf + 2
            else:
                break
            events.append(buffer[start:end])
            start = end
            if 0 <= lf < start:
                lf = buffer.find(b"\n\n", start)
            if 0 <= crlf < start:
                crlf = buffer.find(b"\r\n\r\n", start)
        self.buffer = buffer[start:] if start else buffer
        return events

    def rest(self) -> bytes:
        """What is left after the last whole event (a stream cut short, or one without a final blank line)."""
        rest, self.buffer = self.buffer, b""
        return rest


def strip_usage(event: bytes) -> bytes | None:
    """An OpenAI chat event as a client that did not ask for usage sees it: the usage-only chunk dropped
    (None), `"usage": null` taken out of the others."""
    if event.find(_USAGE) < 0:
        return event
    stripped = event.replace(_COMPACT_NULL_USAGE, b"", 1)  # the common chunk, as OpenAI writes it
    if len(stripped) != len(event):
        return stripped
    if _NO_USAGE.search(event) is not None:  # (a literal-led search; every null-usage field holds one)
        stripped, nulls = _NULL_USAGE_FIELD.subn(b"", event, count=1)
        if nulls:  # its usage is null: not the usage chunk
            return stripped
    if _USAGE_ONLY.search(event) is not None and _USAGE_OBJECT.search(event) is not None:
        return None
    return event


def strip_usage_all(events: list[bytes]) -> bytes:
    """The events as a client that did not ask for usage sees them (`strip_usage` of each), joined."""
    kept = []
    for event in events:
        stripped = event.replace(_COMPACT_NULL_USAGE, b"", 1)  # most events: one search, no more
        if len(stripped) != len(event):
            kept.append(stripped)
            continue
        other = strip_usage(event)
        if other is not None:
            kept.append(other)
    return b"".join(kept)
