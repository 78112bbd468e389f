"""Spans become records: each span that describes a model call is priced and attributed as an
in-process call is (`Tracker._record_now` on a pricing tracker sharing the tracker's catalog), written
to the store, and handed to the tracker's other sinks (budgets, metrics) — exactly once.

Exactly once:

- **A re-exported span** (an exporter retrying, a collector replaying, two collectors handed the same
  export): the record id is derived from the span — 48 bits of its end time in ms, then 80 bits of a
  BLAKE2b hash of trace id + span id — and its timestamp is the span's end time (a span with neither a
  start nor an end time cannot be dated the same way twice: it is refused, `IngestResult.untimed`,
  and the exporter told so in the OTLP partial-success answer). Spans already seen by this process are
  skipped (a bounded memory of recent ones). The others are written with the store's `append_new`
  (SQLite, Postgres: one transaction inserting the ids the ledger does not hold, saying which those
  were), and only the records it says are new reach the budgets and metrics — so a restart, or another
  collector recording the same span at the same moment, never charges a budget twice. A store without
  `append_new` (memory, a custom one) is asked for the ids it holds at those timestamps first, under
  this ingestor's lock (exact within one process).
- **A span summing other calls** (an agent span, the Vercel AI SDK's outer `ai.generateText`):
  skipped, its calls are recorded from their own spans (`spans.NotACall`).
- **A call tokentrail recorded in-process** (the emitting process runs `tt.instrument()` too): its
  span carries `tokentrail.recorded = true` (see `tokentrail._claims`, rule 4) and is skipped.

Attribution across exports: a call span whose ancestors have not all arrived is held (`held`) until
they do, its deadline passes, or the ingestor closes — then recorded once with what is known.

Spans without usage are ignored and counted (`IngestResult.no_usage`). An export's records are in the
store before `ingest` returns (held spans: in the journal, when there is one), so an exporter told 200
has nothing to retry.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokentrail.ingest.held import Held, HeldSpans
from tokentrail.ingest.spans import (
    ATTRIBUTION_KEYS,
    RECORDED_IN_PROCESS,
    Attribution,
    NotACall,
    SpanData,
    attribute_walk,
    read_span,
)
from tokentrail.stores.base import Query

if TYPE_CHECKING:
    from tokentrail._record import Record
    from tokentrail.tracker import Tracker

__all__ = ["DEFAULT_HOLD_SECONDS", "TAG", "IngestResult", "Ingestor", "span_record_id"]

TAG = "otlp"  # every record made from a span carries it: `--by tag` tells them from in-process calls
DEFAULT_HOLD_SECONDS = 60.0  # how long a call span waits for its agent's span
DEFAULT_HOLD_LIMIT = 100_000  # spans held at most (the oldest are recorded first beyond it)
_TIME_BITS = (1 << 48) - 1
_CLUSTER_GAP_US = 1_000_000  # timestamps further apart than this are looked up by separate queries
_logger = logging.getLogger("tokentrail")


def span_record_id(trace_id: bytes, span_id: bytes, timestamp_us: int) -> int:
    """The record id of the call a span describes: the same for every export of that span."""
    digest = hashlib.blake2b(trace_id + span_id, digest_size=10).digest()
    return (((timestamp_us // 1000) & _TIME_BITS) << 80) | int.from_bytes(digest, "big")


@dataclass(slots=True)
class IngestResult:
    """What one export (or a release of held spans, or all of them, summed) came to."""

    spans: int = 0
    recorded: int = 0  # records written (unknown usage included; released held spans included)
    unknown: int = 0  # of those, recorded with unknown usage (the reason kept)
    duplicates: int = 0  # spans recorded before (retried export, replay, another collector)
    in_process: int = 0  # spans of calls tokentrail recorded in the emitting process
    aggregates: int = 0  # spans summing other calls (agent spans, the AI SDK's outer spans)
    no_usage: int = 0  # spans that describe no model call
    untimed: int = 0  # call spans refused: neither a start nor an end time (cannot be dated twice alike)
    held: int = 0  # call spans held back until their ancestors arrive (recorded by a later call)
    released: int = 0  # held spans recorded (counted in `recorded` or `duplicates` too)

    def add(self, other: IngestResult) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class _Discard:
    """The pricing tracker's store: records are written by the ingestor, not by that tracker."""

    def append(self, record: Record) -> None:
        return None

    def summary(self, query: Query, by: tuple[str, ...]) -> list[Any]:
        return []

    def history(self, query: Query, limit: int | None = None) -> list[Record]:
        return []

    def reset(self, query: Query) -> int:
        return 0


class Ingestor:
    """Records the model calls of exported spans on `tracker`'s store and sinks, each once. Thread-safe.

    `hold_seconds`: how long a call span whose ancestors are unknown waits for them (0: never held);
    `hold_limit`: spans held at most; `clock`: monotonic seconds (injectable, for tests); `journal`: a
    file keeping held spans across a crash (see `held`); `ticker`: a daemon thread records the spans
    whose deadline passed (without it, `release_due()` does, as does every export)."""

    def __init__(
        self,
        tracker: Tracker,
        *,
        remember: int = 262_144,
        tags: Iterable[str] = (TAG,),
        hold_seconds: float = DEFAULT_HOLD_SECONDS,
        hold_limit: int = DEFAULT_HOLD_LIMIT,
        clock: Callable[[], float] = time.monotonic,
        journal: str | Path | None = None,
        ticker: bool = False,
    ) -> None:
        from tokentrail.tracker import Tracker

        self.tracker = tracker
        self.totals = IngestResult()
        self._tags = tuple(tags)
        self._limit = remember
        self._seen: OrderedDict[bytes, None] = OrderedDict()  # keys of spans recorded (or found recorded)
        self._recent: OrderedDict[bytes, SpanData] = OrderedDict()  # ancestors for later exports
        self._lock = threading.Lock()
        self._pricer = Tracker(store=_Discard(), catalog=tracker.catalog, capture="sync")
        self.held = HeldSpans(hold_seconds, hold_limit, clock, journal)
        self._closed = False
        self._stop = threading.Event()
        loaded = self.held.open_journal()
        if loaded:  # held before a restart: held again (journaled already) until their deadline
            self._remember(loaded)
            for item in self._read(loaded, IngestResult()):
                parent = item.span.parent_span_id
                self.held.hold(item, item.key[:16] + parent if parent else b"", True)
        ref = weakref.ref(self)
        self._atexit = lambda: _close_ref(ref)
        atexit.register(self._atexit)
        if ticker and hold_seconds > 0:
            interval = min(1.0, hold_seconds / 4)
            thread = threading.Thread(target=_tick, args=(ref, self._stop, interval), daemon=True)
            thread.name = "tokentrail-otlp-held"
            thread.start()

    def ingest(self, spans: list[SpanData]) -> IngestResult:
        """Record the calls `spans` describe; what became of each span is counted in the result."""
        with self._lock:
            result = self._ingest(spans)
            self.totals.add(result)
        return result

    def release_due(self) -> IngestResult:
        """Record the held spans whose deadline passed (with the attribution known now)."""
        with self._lock:
            result = self._ingest([], count=False)
            self.totals.add(result)
        return result

    def close(self) -> IngestResult:
        """Record every held span now (shutdown) and stop; later exports are still recorded, unheld."""
        self._stop.set()
        with self._lock:
            result = IngestResult()
            if not self._closed:
                self._closed = True
                result = self._ingest([], count=False, everything=True)
                self.held.close()
                self.totals.add(result)
        atexit.unregister(self._atexit)
        return result

    # -- one export ------------------------------------------------------------------------------------

    def _ingest(self, spans: list[SpanData], count: bool = True, everything: bool = False) -> IngestResult:
        result = IngestResult(spans=len(spans) if count else 0)
        held = self.held
        items = self._read(spans, result) if spans else []
        if spans:
            self._remember(spans)
        forced = held.due(everything)  # first: a span taken here is not woken too
        woken = held.woken([span.trace_id + span.span_id for span in spans]) if len(held) else []
        ready: list[tuple[Held, Attribution]] = []
        holding: list[Held] = []
        here = {span.trace_id + span.span_id: span for span in spans} if spans else {}
        recent = self._recent
        inherited: dict[bytes, tuple[Attribution, bytes]] = {}  # by parent line, for spans naming nobody
        keys = ATTRIBUTION_KEYS
        may_hold = held.seconds > 0 and not self._closed
        released: list[Held] = []  # spans held before, recorded now
        queue: list[tuple[Held, bool | None]] = [
            *((i, True) for i in items),
            *((i, False) for i in woken),
            *((i, None) for i in forced),
        ]
        at = 0
        while at < len(queue):
            item, new = queue[at]
            at += 1
            if at == len(queue) and len(held) > held.limit - (new is True):  # over the limit: the oldest go
                queue.extend((i, None) for i in held.due(room=new is True))
            span = item.span
            trace = item.key[:16]
            plain = span.attributes.keys().isdisjoint(keys)
            line = trace + span.parent_span_id
            found = inherited.get(line) if plain else None
            if found is None:

                def ancestor(span_id: bytes, trace: bytes = trace) -> SpanData | None:
                    key = trace + span_id
                    return here.get(key) or recent.get(key)

                found = attribute_walk(span, ancestor, trace.hex())
                if plain:
                    inherited[line] = found
            who, missing = found
            if missing and may_hold and new is not None:
                held.hold(item, trace + missing, new)
                if new:
                    holding.append(item)
                continue
            ready.append((item, who))
            if new is not True:
                released.append(item)
        holding = [item for item in holding if item.key in held]
        held.release(released)
        try:
            if ready:
                self._write(ready, result)
        except BaseException:
            held.restore(released)  # still journaled: recorded by a later call
            raise
        finally:
            held.commit(holding, [])
        held.commit([], released)
        result.held += len(holding)
        result.released += len(released)
        return result

    def _read(self, spans: list[SpanData], result: IngestResult) -> list[Held]:
        """The call spans of an export not recorded before by this process (nor held), each once."""
        items: dict[bytes, Held] = {}
        seen, held = self._seen, self.held
        for span in spans:
            attributes = span.attributes
            if not attributes:
                result.no_usage += 1
                continue
            try:
                call = read_span(attributes)
            except NotACall:
                result.aggregates += 1
                continue
            if call is None:
                result.no_usage += 1
                continue
            if attributes.get(RECORDED_IN_PROCESS) is True:
                result.in_process += 1
                continue
            key = span.trace_id + span.span_id
            if key in seen or key in items or key in held:
                result.duplicates += 1
                continue
            timestamp_us = (span.end_ns or span.start_ns) // 1000
            if not timestamp_us:
                result.untimed += 1
                continue
            items[key] = Held(span, call, key, timestamp_us, span_record_id(key[:16], key[16:], timestamp_us))
        return list(items.values())

    def _write(self, ready: list[tuple[Held, Attribution]], result: IngestResult) -> None:
        """Price and write `ready`; hand the records the store did not hold to the tracker's other sinks."""
        tracker = self.tracker
        store = tracker.store
        append_new = getattr(store, "append_new", None)
        if append_new is None:
            stored = self._stored_ids(sorted(item.timestamp_us for item, _ in ready))
            known = [pair for pair in ready if pair[0].record_id in stored]
            if known:
                ready = [pair for pair in ready if pair[0].record_id not in stored]
                self._mark_seen([item for item, _ in known])
                result.duplicates += len(known)
        record = self._pricer._record_now
        tags = self._tags
        records: list[Record] = []
        for item, who in ready:
            span, call = item.span, item.call
            duration = (span.end_ns - span.start_ns) / 1e6 if span.end_ns >= span.start_ns > 0 else None
            records.append(
                record(
                    call.usage,
                    call.model,
                    call.provider,
                    duration,
                    None,
                    None,
                    None,
                    who.agent,
                    who.session,
                    who.user,
                    None,
                    tags,
                    None,
                    None,
                    item.timestamp_us,
                    item.record_id,
                )
            )
        if append_new is not None:
            new = append_new(records) if records else []
        else:
            for one in records:
                store.append(one)
            flush = getattr(store, "flush", None)
            if callable(flush):
                flush()
            new = records
        self._mark_seen([item for item, _ in ready])
        result.recorded += len(new)
        result.duplicates += len(records) - len(new)
        result.unknown += sum(1 for one in new if one.usage.status.value == "unknown")
        sinks = [sink for sink in tracker._shared.sinks if getattr(sink, "__self__", None) is not store]
        for one in new:
            for sink in sinks:
                try:
                    sink(one)
                except Exception as exc:  # a sink must not lose the export (its records are written)
                    tracker._sink_failed(sink, exc)

    def _stored_ids(self, stamps: list[int]) -> set[int]:
        """The ids of the records the store holds at these timestamps (sorted)."""
        store = self.tracker.store
        found: set[int] = set()
        start = previous = stamps[0]
        for stamp in [*stamps[1:], None]:
            if stamp is not None and stamp - previous <= _CLUSTER_GAP_US:
                previous = stamp
                continue
            found.update(record.id for record in store.history(Query(since_us=start, until_us=previous + 1)))
            if stamp is not None:
                start = previous = stamp
        return found

    def _mark_seen(self, items: list[Held]) -> None:
        seen = self._seen
        for item in items:
            seen[item.key] = None
        while len(seen) > self._limit:
            seen.popitem(last=False)

    def _remember(self, spans: list[SpanData]) -> None:
        """Keep what a later export's spans may need from these as ancestors (attribution only)."""
        recent = self._recent
        keys = ATTRIBUTION_KEYS
        for span in spans:
            attributes = span.attributes
            kept = {key: attributes[key] for key in attributes.keys() & keys}
            recent[span.trace_id + span.span_id] = SpanData(  # a root naming nobody ends a walk too
                span.trace_id, span.span_id, span.parent_span_id, span.name, 0, 0, kept
            )
        limit = self._limit // 4
        while len(recent) > limit:
            recent.popitem(last=False)


def _close_ref(ref: weakref.ReferenceType[Ingestor]) -> None:
    ingestor = ref()
    if ingestor is not None:
        try:
            ingestor.close()
        except Exception:
            _logger.exception("tokentrail: could not record the held spans at exit")


def _tick(ref: weakref.ReferenceType[Ingestor], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        ingestor = ref()
        if ingestor is None:
            return
        try:
            if len(ingestor.held):
                ingestor.release_due()
        except Exception:  # the store is down: the spans stay held (journaled) and are tried again
            _logger.warning("tokentrail: could not record held spans", exc_info=True)
        del ingestor
