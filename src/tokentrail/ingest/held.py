"""Call spans held back until the spans above them arrive, so their agent is known when they are recorded.

An exporter sends a span when it ends: with the SDK's `SimpleSpanProcessor`, or when an agent run
outlasts a batch, a model call's span reaches the endpoint before its agent's span — the agent, session
and user it names would be lost if the call were recorded at once. So a call span whose walk up its
ancestors stops at a span not seen yet is held:

- until that ancestor arrives (then it is walked again, and held again if the walk stops higher up),
- or its deadline passes (`seconds` after it arrived, on an injectable `clock`),
- or more than `limit` spans are held (the oldest go first),
- or the ingestor closes (shutdown: everything held is recorded with what is known),

and is then recorded exactly once, with the attribution known by then (session: the trace id when no
span named one). A record's time is its span's end time, whenever it is written.

**Never lost**: with a `journal` file, each held span is appended to it (and fsync'd) before the
exporter is answered, and its release is noted after its record is written; a restarted ingestor holds
the spans the journal still lists (a span recorded just before a crash, its release not noted yet, is
written again — which the store ignores: same record id). Without a journal a process killed while
holding spans loses them (a clean shutdown records them first).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tokentrail.ingest.spans import SpanCall, SpanData

__all__ = ["Held", "HeldSpans", "JournalInUse", "default_journal"]


class JournalInUse(RuntimeError):
    """Another process holds spans in this journal file."""


@dataclass(slots=True)
class Held:
    """A call span read and deduplicated, waiting to be recorded (or being recorded now)."""

    span: SpanData
    call: SpanCall
    key: bytes  # trace id + span id
    timestamp_us: int
    record_id: int
    deadline: float = 0.0
    waiting_on: bytes = b""  # trace id + the id of the unknown ancestor


class HeldSpans:
    """The held spans, oldest first, indexed by the ancestor each waits for; optionally journaled."""

    def __init__(
        self, seconds: float, limit: int, clock: Callable[[], float], journal: str | Path | None = None
    ) -> None:
        self.seconds = seconds
        self.limit = limit
        self.clock = clock
        self._held: OrderedDict[bytes, Held] = OrderedDict()
        self._waiting: dict[bytes, list[bytes]] = {}
        self._journal: IO[bytes] | None = None
        self._lines = 0
        self.journal_path = Path(journal) if journal is not None else None

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: bytes) -> bool:
        return key in self._held

    # -- holding and releasing ------------------------------------------------------------------------

    def hold(self, item: Held, waiting_on: bytes, new: bool) -> None:
        """Hold `item` until the span `waiting_on` (trace id + span id) arrives; `new`: not held before
        (its deadline starts now; it is journaled by `commit`)."""
        if new:
            item.deadline = self.clock() + self.seconds
            self._held[item.key] = item
        item.waiting_on = waiting_on
        if waiting_on:
            self._waiting.setdefault(waiting_on, []).append(item.key)

    def woken(self, keys: Iterable[bytes]) -> list[Held]:
        """The held spans waiting for one of these spans (which just arrived), taken off their wait."""
        waiting = self._waiting
        if not waiting:
            return []
        out: list[Held] = []
        for key in keys:
            found = waiting.pop(key, None)
            if found:
                out.extend(self._held[k] for k in found if k in self._held)
        for item in out:
            item.waiting_on = b""
        return out

    def due(self, everything: bool = False, room: int = 0) -> list[Held]:
        """Take the spans whose deadline passed, and the oldest beyond the limit less `room` (`everything`:
        all)."""
        held = self._held
        if not held:
            return []
        now = self.clock()
        out: list[Held] = []
        while held:
            item = next(iter(held.values()))
            if not everything and item.deadline > now and len(held) + room <= self.limit:
                break
            held.popitem(last=False)
            self._unwait(item)
            out.append(item)
        return out

    def release(self, items: list[Held]) -> None:
        """These spans are being recorded: no longer held (their release is journaled by `commit`)."""
        for item in items:
            if self._held.pop(item.key, None) is not None:
                self._unwait(item)

    def restore(self, items: list[Held]) -> None:
        """Recording these failed: hold them again, at their old deadline (still in the journal)."""
        for item in items:
            self._held[item.key] = item
            self._held.move_to_end(item.key, last=False)
            if item.waiting_on:
                self._waiting.setdefault(item.waiting_on, []).append(item.key)

    def _unwait(self, item: Held) -> None:
        if item.waiting_on:
            keys = self._waiting.get(item.waiting_on)
            if keys is not None:
                with contextlib.suppress(ValueError):
                    keys.remove(item.key)
                if not keys:
                    del self._waiting[item.waiting_on]
            item.waiting_on = b""

    # -- the journal -----------------------------------------------------------------------------------

    def open_journal(self) -> list[SpanData]:
        """Open (and lock) the journal; the spans it lists as held and not released."""
        path = self.journal_path
        if path is None:
            return []
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise JournalInUse(f"another process holds spans in {path}") from None
        journal = os.fdopen(fd, "a+b")
        journal.seek(0)
        pending: dict[str, SpanData] = {}
        for line in journal:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: its span was never acknowledged
            if "h" in entry:
                span = _span_of(entry["h"])
                pending[(span.trace_id + span.span_id).hex()] = span
            for key in entry.get("r", ()):
                pending.pop(key, None)
        self._journal = journal
        self._rewrite(list(pending.values()))
        return list(pending.values())

    def commit(self, held: list[Held], released: list[Held]) -> None:
        """Journal newly held spans (fsync'd: the exporter is answered next) and released ones."""
        journal = self._journal
        if journal is None or not (held or released):
            return
        lines = [
            json.dumps({"h": _entry(item.span)}, separators=(",", ":")).encode() + b"\n" for item in held
        ]
        if released:
            keys = [item.key.hex() for item in released]
            lines.append(json.dumps({"r": keys}, separators=(",", ":")).encode() + b"\n")
        journal.write(b"".join(lines))
        journal.flush()
        if held:
            os.fsync(journal.fileno())
        self._lines += len(lines)
        if self._lines > 1024 and self._lines > 4 * len(self._held):
            self._rewrite([item.span for item in self._held.values()])

    def _rewrite(self, spans: list[SpanData]) -> None:
        """Replace the journal by one listing only `spans` (atomically: a new file renamed over it)."""
        journal, path = self._journal, self.journal_path
        if journal is None or path is None:
            return
        temporary = path.with_name(path.name + ".new")
        with open(temporary, "wb") as out:
            out.write(b"".join(json.dumps({"h": _entry(span)}).encode() + b"\n" for span in spans))
            out.flush()
            os.fsync(out.fileno())
        import fcntl

        fd = os.open(temporary, os.O_RDWR | os.O_APPEND)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
        os.replace(temporary, path)
        journal.close()
        self._journal = os.fdopen(fd, "a+b")
        self._lines = len(spans)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None


def _entry(span: SpanData) -> list[Any]:
    return [
        span.trace_id.hex(),
        span.span_id.hex(),
        span.parent_span_id.hex(),
        span.name,
        span.start_ns,
        span.end_ns,
        span.attributes,
    ]


def _span_of(entry: list[Any]) -> SpanData:
    trace, span, parent, name, start, end, attributes = entry
    return SpanData(
        bytes.fromhex(trace), bytes.fromhex(span), bytes.fromhex(parent), name, start, end, dict(attributes)
    )


def default_journal(store: str, port: int) -> str:
    """Where a server on `port` writing to `store` keeps its held spans: beside a SQLite ledger, else in
    the store's spool directory (its URL's `spool=`, or the default one), named by a hash of the URL."""
    import hashlib
    from urllib.parse import parse_qs, urlsplit

    from tokentrail.stores._spool import default_spool_dir

    if store.startswith("sqlite:///"):
        path = store.removeprefix("sqlite:///").partition("?")[0]
        if path and path != ":memory:":
            return f"{path}.otlp-held-{port}.jsonl"
    digest = hashlib.blake2b(store.encode(), digest_size=8).hexdigest()
    spool = parse_qs(urlsplit(store).query).get("spool")
    directory = Path(spool[-1]) if spool else default_spool_dir()
    return str(directory / f"otlp-held-{digest}-{port}.jsonl")
