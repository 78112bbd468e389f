"""Stream accumulators for any provider: `stream_accumulator()` picks the right one from the first event.

Feed it every event as the stream goes by, then `close()` it (`close(aborted=True)` when the stream
stopped early); `usage()` is then complete, partial (what was seen) or unknown (with a reason).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokentrail._types import Usage
from tokentrail.adapters._base import Captured, StreamAccumulator, decode_event, logger
from tokentrail.adapters._detect import canonical_provider, detect_stream

__all__ = ["StreamAccumulator", "capture_stream", "stream_accumulator", "usage_from_stream"]


class _DetectingStream(StreamAccumulator):
    """An accumulator that becomes the right provider's accumulator at the first event it recognizes."""

    def __init__(self, provider: str | None) -> None:
        super().__init__(canonical_provider(provider) if provider else "unknown")
        self._requested = provider
        self._inner: StreamAccumulator | None = None

    def feed(self, event: object) -> None:
        if self._inner is None:
            try:
                decoded = decode_event(event)
                found = detect_stream(decoded, self._requested) if decoded is not None else None
            except Exception as exc:  # detection never raises into the caller's stream
                logger.debug("stream event could not be recognized", exc_info=True)
                self.problem = f"unexpected {type(exc).__name__} while recognizing a stream event: {exc}"
                found = None
            if found is None:
                super().feed(None)  # counted, otherwise ignored until a recognizable event arrives
                return
            factory, provider = found
            self._inner = factory(provider)
            self._inner.events = self.events
            self._inner.problem = self.problem
            self.provider = provider
        self._inner.feed(event)
        self._sync()

    def _sync(self) -> None:
        inner = self._inner
        if inner is not None:
            self.events = inner.events
            self.model = inner.model
            self.price_context = inner.price_context
            self.final = inner.final
            self.problem = inner.problem

    def close(self, *, aborted: bool = False) -> None:
        super().close(aborted=aborted)
        if self._inner is not None:
            self._inner.close(aborted=aborted)

    def usage(self) -> Usage:
        if self._inner is not None:
            return self._inner.usage()
        return super().usage()

    def captured(self) -> Captured:
        if self._inner is not None:
            return self._inner.captured()
        return super().captured()

    def _feed(self, event: object) -> None:
        """Events reach the detected accumulator through `feed`; nothing is read here."""

    def _seen(self) -> Usage | None:
        return None


def stream_accumulator(provider: str | None = None) -> StreamAccumulator:
    """A new accumulator for one streamed response; the provider's stream format is recognized from
    the events, and `provider` (when given) is the name the usage is priced and reported by."""
    return _DetectingStream(provider)


def capture_stream(
    events: Iterable[object], provider: str | None = None, *, aborted: bool = False
) -> Captured:
    """Feed every event of a finished (or, with `aborted`, cut-short) stream and return what it revealed.

    An iterable that raises part-way counts as an aborted stream; the error is not raised.
    """
    accumulator = stream_accumulator(provider)
    try:
        for event in events:
            accumulator.feed(event)
    except Exception:
        logger.debug("stream raised while being read; counted as aborted", exc_info=True)
        aborted = True
    accumulator.close(aborted=aborted)
    return accumulator.captured()


def usage_from_stream(
    events: Iterable[object], provider: str | None = None, *, aborted: bool = False
) -> Usage:
    """The usage of a whole stream of events (see `capture_stream`)."""
    return capture_stream(events, provider, aborted=aborted).usage
