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
from tokentrail.adapters._body_tap import _event_end

__all__ = ["ArrayStream", "DeferredStream", "EventSplitter", "strip_usage"]

_USAGE = b'"usage'  # "usage" (OpenAI, Anthropic) and "usageMetadata" (Gemini)
_NO_USAGE = re.compile(rb'"usage"\s*:\s*null')
_USAGE_ONLY = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_NULL_USAGE_FIELD = re.compile(rb',\s*"usage"\s*:\s*null|"usage"\s*:\s*null\s*,')
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
        self.events += 1
        if self.events == 1 or (
            _USAGE in event and _COMPACT_NULL_USAGE[1:] not in event and _NO_USAGE.search(event) is None
        ):
            self.kept.append(event)

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


class EventSplitter:
    """Cuts a byte stream into whole server-sent events (each with its blank-line terminator)."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def split(self, chunk: bytes) -> list[bytes]:
        buffer = self.buffer + chunk if self.buffer else chunk
        events = []
        start = 0
        while True:
            end, width = _event_end(buffer, start)
            if end < 0:
                break
            events.append(buffer[start : end + width])
            start = end + width
        self.buffer = buffer[start:]
        return events

    def rest(self) -> bytes:
        """What is left after the last whole event (a stream cut short, or one without a final blank line)."""
        rest, self.buffer = self.buffer, b""
        return rest


def strip_usage(event: bytes) -> bytes | None:
    """An OpenAI chat event as a client that did not ask for usage sees it: the usage-only chunk dropped
    (None), `"usage": null` taken out of the others."""
    if _USAGE not in event:
        return event
    if _COMPACT_NULL_USAGE in event:  # the common chunk, as OpenAI writes it: a substring search, no regex
        return event.replace(_COMPACT_NULL_USAGE, b"", 1)
    stripped, nulls = _NULL_USAGE_FIELD.subn(b"", event, count=1)
    if nulls:  # its usage is null: not the usage chunk
        return stripped
    if _USAGE_ONLY.search(event) is not None and _USAGE_OBJECT.search(event) is not None:
        return None
    return event
