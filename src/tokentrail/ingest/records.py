"""Spans become records: each span that describes a model call is priced, attributed and recorded
through the tracker (`Tracker._record_now`, the path every instrumented call takes), exactly once.

Exactly once, three ways:

- **A re-exported span** (an exporter retrying, a collector replaying): the record id is derived from
  the span — 48 bits of its end time in ms, then 80 bits of a BLAKE2b hash of trace id + span id — and
  its timestamp is the span's end time. Spans already seen by this process are skipped (a bounded
  memory of recent ones); the others are looked up in the store by their exact timestamps (one query
  per cluster of nearby timestamps) and skipped when their id is there — so a restart does not count
  them again, in the ledger nor in the budgets and metrics, which see only what is recorded. Even a
  span two processes record at once is one row: stores ignore a record id they hold.
- **A span summing other calls** (an agent span, the Vercel AI SDK's outer `ai.generateText`):
  skipped, its calls are recorded from their own spans (`spans.NotACall`).
- **A call tokentrail recorded in-process** (the emitting process runs `tt.instrument()` too): its
  span carries `tokentrail.recorded = true` (see `tokentrail._claims`, rule 4) and is skipped.

Spans without usage are ignored and counted (`IngestResult.no_usage`). An export's records are
flushed to the store before `ingest` returns, so an exporter told 200 has nothing to retry.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tokentrail.ingest.spans import (
    ATTRIBUTION_KEYS,
    RECORDED_IN_PROCESS,
    Attribution,
    NotACall,
    SpanCall,
    SpanData,
    attribute,
    read_span,
)
from tokentrail.stores.base import Query

if TYPE_CHECKING:
    from tokentrail.tracker import Tracker

__all__ = ["TAG", "IngestResult", "Ingestor", "span_record_id"]

TAG = "otlp"  # every record made from a span carries it: `--by tag` tells them from in-process calls
_TIME_BITS = (1 << 48) - 1
_CLUSTER_GAP_US = 1_000_000  # timestamps further apart than this are looked up by separate queries


def span_record_id(trace_id: bytes, span_id: bytes, timestamp_us: int) -> int:
    """The record id of the call a span describes: the same for every export of that span."""
    digest = hashlib.blake2b(trace_id + span_id, digest_size=10).digest()
    return (((timestamp_us // 1000) & _TIME_BITS) << 80) | int.from_bytes(digest, "big")


@dataclass(slots=True)
class IngestResult:
    """What one export (or all of them, summed) came to."""

    spans: int = 0
    recorded: int = 0  # records written (unknown usage included)
    unknown: int = 0  # of those, recorded with unknown usage (the reason kept)
    duplicates: int = 0  # spans recorded before (retried export, replay)
    in_process: int = 0  # spans of calls tokentrail recorded in the emitting process
    aggregates: int = 0  # spans summing other calls (agent spans, the AI SDK's outer spans)
    no_usage: int = 0  # spans that describe no model call

    def add(self, other: IngestResult) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class _Pending:
    span: SpanData
    call: SpanCall
    key: bytes
    timestamp_us: int
    record_id: int


@dataclass(slots=True)
class _Memory:
    """Bounded memory of recently recorded span keys and of recent spans' attribution (for ancestors)."""

    limit: int
    seen: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    spans: OrderedDict[bytes, SpanData] = field(default_factory=OrderedDict)


class Ingestor:
    """Records the model calls of exported spans on `tracker`, each once. Thread-safe."""

    def __init__(self, tracker: Tracker, *, remember: int = 262_144, tags: Iterable[str] = (TAG,)) -> None:
        self.tracker = tracker
        self.totals = IngestResult()
        self._tags = tuple(tags)
        self._memory = _Memory(remember)
        self._lock = threading.Lock()

    def ingest(self, spans: list[SpanData]) -> IngestResult:
        """Record the calls `spans` describe; what became of each span is counted in the result."""
        result = IngestResult(spans=len(spans))
        with self._lock:
            pending = self._read(spans, result)
            if pending:
                pending = self._unseen(pending, result)
            if pending:
                self._record(spans, pending, result)
                self.tracker.flush()  # written before the exporter hears 200: its retry is not needed
            self._remember(spans)
            self.totals.add(result)
        return result

    def _read(self, spans: list[SpanData], result: IngestResult) -> list[_Pending]:
        pending: list[_Pending] = []
        seen = self._memory.seen
        now_us = time.time_ns() // 1000
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
            if key in seen:
                result.duplicates += 1
                continue
            timestamp_us = (span.end_ns or span.start_ns) // 1000 or now_us
            pending.append(
                _Pending(span, call, key, timestamp_us, span_record_id(key[:16], key[16:], timestamp_us))
            )
        return pending

    def _unseen(self, pending: list[_Pending], result: IngestResult) -> list[_Pending]:
        """`pending` without the spans recorded already (twice in this export, or in the store)."""
        unique: dict[bytes, _Pending] = {}
        for item in pending:
            if item.key in unique:
                result.duplicates += 1
            else:
                unique[item.key] = item
        stored = self._stored_ids(sorted(item.timestamp_us for item in unique.values()))
        fresh = [item for item in unique.values() if item.record_id not in stored]
        result.duplicates += len(unique) - len(fresh)
        return fresh

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

    def _record(self, spans: list[SpanData], pending: list[_Pending], result: IngestResult) -> None:
        memory = self._memory
        recent = memory.spans
        here = {span.trace_id + span.span_id: span for span in spans}
        record = self.tracker._record_now
        tags = self._tags
        inherited: dict[bytes, Attribution] = {}  # what a span naming nobody gets from its parent's line
        keys = ATTRIBUTION_KEYS
        for item in pending:
            span, call = item.span, item.call
            trace = item.key[:16]
            plain = span.attributes.keys().isdisjoint(keys)
            line = trace + span.parent_span_id
            who = inherited.get(line) if plain else None
            if who is None:

                def ancestor(span_id: bytes, trace: bytes = trace) -> SpanData | None:
                    key = trace + span_id
                    return here.get(key) or recent.get(key)

                who = attribute(span, ancestor, trace.hex())
                if plain:
                    inherited[line] = who
            duration = (span.end_ns - span.start_ns) / 1e6 if span.end_ns >= span.start_ns > 0 else None
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
            result.recorded += 1
            if call.usage.status.value == "unknown":
                result.unknown += 1
        seen = memory.seen
        for item in pending:
            seen[item.key] = None
        while len(seen) > memory.limit:
            seen.popitem(last=False)

    def _remember(self, spans: list[SpanData]) -> None:
        """Keep what a later export's spans may need from these as ancestors (attribution only)."""
        recent = self._memory.spans
        keys = ATTRIBUTION_KEYS
        for span in spans:
            attributes = span.attributes
            kept = {key: attributes[key] for key in attributes.keys() & keys}
            if kept or span.parent_span_id:
                recent[span.trace_id + span.span_id] = SpanData(
                    span.trace_id, span.span_id, span.parent_span_id, span.name, 0, 0, kept
                )
        limit = self._memory.limit // 4
        while len(recent) > limit:
            recent.popitem(last=False)
