"""Estimate vs actual: estimates kept on records (tracker, memory and SQLite stores), `drift()`
arithmetic, the v1 → v2 SQLite migration and the report section."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import tokentrail as tt
from tokentrail._record import Record, to_timestamp_us
from tokentrail._types import TOKEN_FIELDS
from tokentrail.reports.tables import render_text
from tokentrail.stores.base import Query, provider_cost_units
from tokentrail.stores.memory import MemoryStore
from tokentrail.stores.sqlite import (
    _RECORD_COLUMNS,
    _ROLLUP_COLUMNS,
    _TOKEN_FIELDS_V1,
    SCHEMA_VERSION,
    SQLiteStore,
    _record_columns,
    _rollup_columns,
    _rollup_deltas,
    _schema_v1,
)
from tokentrail.tokens import DriftRow, count, drift
from tokentrail.tracker import Tracker

AT = datetime(2025, 6, 1, 12, 30, tzinfo=timezone.utc)


def _usage(n: int, status: tt.UsageStatus = tt.UsageStatus.COMPLETE) -> tt.Usage:
    return tt.Usage(input_tokens=n, output_tokens=10, status=status)


def _fill(tracker: Tracker) -> None:
    # gpt-4o: estimates 110 vs 100 (+10 %), 90 vs 100 (−10 %), 130 vs 100 (+30 %)
    tracker.record(_usage(100), "gpt-4o", at=AT, estimated_input_tokens=110)
    tracker.record(_usage(100), "gpt-4o", at=AT, estimated_input_tokens=90)
    tracker.record(_usage(100), "gpt-4o", at=AT + timedelta(hours=2), estimated_input_tokens=130)
    tracker.record(_usage(500), "gpt-4o", at=AT)  # no estimate: not compared
    # claude: 180 vs 200 (−10 %), and a call billed 0 input tokens (in the sums, no relative error)
    tracker.record(_usage(200), "claude-sonnet-4-5", at=AT, estimated_input_tokens=180)
    tracker.record(_usage(0), "claude-sonnet-4-5", at=AT, estimated_input_tokens=5)
    # usage counted locally, not billed: no ground truth
    tracker.record(_usage(50, tt.UsageStatus.ESTIMATED), "gpt-4o", at=AT, estimated_input_tokens=70)


def _check(rows: list[DriftRow]) -> None:
    by_model = {row.model: row for row in rows}
    assert [row.model for row in rows] == ["gpt-4o", "claude-sonnet-4-5"]
    gpt = by_model["gpt-4o"]
    assert (gpt.calls, gpt.estimated_input_tokens, gpt.billed_input_tokens) == (3, 330, 300)
    assert gpt.difference == 30
    assert gpt.total_relative_error == pytest.approx(0.1)
    assert gpt.mean_relative_error == pytest.approx((0.1 + 0.1 + 0.3) / 3)
    assert gpt.max_relative_error == pytest.approx(0.3)
    assert gpt.bias == pytest.approx((0.1 - 0.1 + 0.3) / 3)
    claude = by_model["claude-sonnet-4-5"]
    assert (claude.calls, claude.estimated_input_tokens, claude.billed_input_tokens) == (2, 185, 200)
    assert claude.mean_relative_error == pytest.approx(0.1)
    assert claude.max_relative_error == pytest.approx(0.1)
    assert claude.bias == pytest.approx(-0.1)


def test_drift_arithmetic_on_known_records() -> None:
    tracker = Tracker()
    _fill(tracker)
    _check(drift(tracker))
    _check(drift(tracker.history()))  # a plain iterable of records works too
    assert drift([]) == []


def test_drift_without_billed_input_has_no_relative_error() -> None:
    record = Record(1, 0, _usage(0), "m", None, None, estimated_input_tokens=3)
    [row] = drift([record])
    assert row.calls == 1 and row.mean_relative_error is None and row.total_relative_error is None


def test_record_keeps_estimate_and_positions() -> None:
    tracker = Tracker()
    counted = count("Hello there, world!", "gpt-4o")
    first = tracker.record(_usage(7), "gpt-4o", estimated_input_tokens=counted)  # a TokenCount is accepted
    assert first.estimated_input_tokens == counted.tokens
    assert first.input_estimate_error == counted.tokens - 7
    plain = tracker.record(_usage(7), "gpt-4o")
    assert plain.estimated_input_tokens is None and plain.input_estimate_error is None
    # positional construction with the old fields still works
    old = Record(1, 2, _usage(1), "m", "p", None, None, "why", None, plain.attribution, None, None)
    assert old.estimated_input_tokens is None


@pytest.mark.parametrize("bad", [-1, "12", 1.5, True, object(), 2**64])
def test_bad_estimates_are_dropped_not_raised(bad: object) -> None:
    tracker = Tracker()
    record = tracker.record(_usage(7), "gpt-4o", estimated_input_tokens=bad)  # type: ignore[arg-type]
    assert record.estimated_input_tokens is None
    assert tracker.history()[0].usage.input_tokens == 7


def _fields(row: DriftRow) -> dict[str, object]:
    return {name: getattr(row, name) for name in DriftRow.__slots__}


def test_memory_store_round_trip() -> None:
    tracker = Tracker(store=MemoryStore(batch_size=3))
    _fill(tracker)
    _check(drift(tracker))
    # a partial reset rebuilds a cell from records: the estimates survive it
    removed = tracker.reset(model="claude-sonnet-4-5")
    assert removed == 2
    tracker.record(_usage(100), "gpt-4o", at=AT, estimated_input_tokens=100)
    # cut the 12:00 hour at 12:35: the records before go, the cell is rebuilt from the rest
    tracker.record(_usage(100), "gpt-4o", at=AT + timedelta(minutes=10), estimated_input_tokens=120)
    assert tracker.store.reset(Query.build({}, None, to_timestamp_us(AT + timedelta(minutes=5)))) == 5
    kept = [(r.usage.input_tokens, r.estimated_input_tokens) for r in tracker.history()]
    assert kept == [(100, 120), (100, 130)]


def test_memory_store_keeps_estimates_beside_wide_records() -> None:
    store = MemoryStore()
    tracker = Tracker(store=store)
    wide = tt.Usage(input_tokens=5_000_000_000, output_tokens=1, input_audio_tokens=3)
    tracker.record(wide, "gpt-4o", at=AT, estimated_input_tokens=4_900_000_000)
    tracker.record(_usage(10), "gpt-4o", at=AT, estimated_input_tokens=12)
    tracker.record(_usage(10), "gpt-4o", at=AT)
    got = [(r.usage.input_tokens, r.estimated_input_tokens) for r in tracker.history()]
    assert got == [(5_000_000_000, 4_900_000_000), (10, 12), (10, None)]


def test_sqlite_store_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    tracker = Tracker(store=store)
    _fill(tracker)
    store.close()
    reopened = SQLiteStore(path)
    try:
        _check(drift(Tracker(store=reopened)))
        assert len(reopened.history(_all())) == 7
    finally:
        reopened.close()


def _all() -> Query:
    return Query.build({}, None, None)


def _wide_row(record: Record) -> tuple[object, ...]:
    """A record as a row of the wide `records` table of schema v1–v4 (`_RECORD_COLUMNS` order)."""
    rule = (
        None
        if record.price_rule is None
        else json.dumps(record.price_rule.as_dict(), sort_keys=True, default=str)
    )
    reported = record.provider_cost
    values: dict[str, object] = {
        "agent": record.agent,
        "session": record.session,
        "user": record.user,
        "tool": record.tool,
        "model": record.model,
        "provider": record.provider,
        "tags": json.dumps(list(record.tags)),
        "path": json.dumps(list(record.path)),
        "status": record.usage.status.value,
        "priced": int(record.cost_units is not None),
        "usage_reason": record.usage.reason,
        "unpriced_reason": record.unpriced_reason,
        "rule": rule,
        "id": f"{record.id:032x}",
        "ts": record.timestamp_us,
        "hour": record.timestamp_us // 3_600_000_000,
        "cost": None if record.cost_units is None else str(record.cost_units),
        "duration": record.duration_ms,
        "provider_cost": None if reported is None else str(reported),
        "pc_units": None if reported is None else str(provider_cost_units(reported)),
        "context": None,
        **{f"t_{name}": getattr(record.usage, name) for name in TOKEN_FIELDS},
        "est_input": record.estimated_input_tokens,
        "ttft": record.ttft_ms,
        "non_token": None if record.cost_units is None else str(record.non_token_units),  # v9
    }
    return tuple(values[column] for column in _RECORD_COLUMNS)


def _make_v1_file(path: Path, records: list[Record]) -> None:
    """A ledger as tokentrail wrote it before schema version 2 (no estimate column, v1's counts)."""
    rows = [_wide_row(record) for record in records]
    v1_columns = _record_columns(_TOKEN_FIELDS_V1)
    assert v1_columns[-2:] == ("est_input", "ttft")  # added by v2 and v3
    v1_columns = v1_columns[:-2]
    v1_rollup = _rollup_columns(_TOKEN_FIELDS_V1)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    for statement in _schema_v1():
        conn.execute(statement)

    def project(row: Sequence[Any], names: Sequence[str], wanted: Sequence[str]) -> tuple[Any, ...]:
        by_name = dict(zip(names, row, strict=True))
        return tuple(by_name[name] for name in wanted)

    quoted = ", ".join(f'"{c}"' for c in v1_columns)
    rollup = ", ".join(f'"{c}"' for c in v1_rollup)
    conn.executemany(
        f"INSERT INTO records ({quoted}) VALUES ({', '.join('?' * len(v1_columns))})",
        [project(row, _RECORD_COLUMNS, v1_columns) for row in rows],
    )
    conn.executemany(
        f"INSERT INTO rollup_hour ({rollup}) VALUES ({', '.join('?' * len(v1_rollup))})",
        [project(delta, _ROLLUP_COLUMNS, v1_rollup) for delta in _rollup_deltas(rows)],
    )
    conn.commit()
    conn.close()


def test_sqlite_migrates_a_v1_file(tmp_path: Path) -> None:
    source = Tracker()
    source.record(_usage(100), "gpt-4o", at=AT, agent="old")
    source.record(_usage(300), "gpt-4o", at=AT, agent="old", provider_cost="0.01")
    path = tmp_path / "v1.db"
    _make_v1_file(path, source.history())
    conn = sqlite3.connect(path)
    assert "est_input" not in {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    conn.close()

    store = SQLiteStore(path)
    tracker = Tracker(store=store)
    try:
        old = tracker.history()
        assert [r.usage.input_tokens for r in old] == [100, 300]
        assert all(r.estimated_input_tokens is None for r in old)
        assert [r.id for r in old] == [r.id for r in source.history()]
        assert all(r.ttft_ms is None for r in old)
        tracker.record(_usage(200), "gpt-4o", at=AT, estimated_input_tokens=220, ttft_ms=41.5)
        assert tracker.totals().calls == 3 and tracker.totals().input_tokens == 600
        [row] = drift(tracker)
        assert (row.calls, row.estimated_input_tokens, row.billed_input_tokens) == (1, 220, 200)
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    columns = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    assert {"est_input", "ttft"} <= columns
    conn.close()
    reopened = SQLiteStore(path)  # a second open does not migrate again
    try:
        assert sorted(r.ttft_ms or 0.0 for r in reopened.history(_all())) == [0.0, 0.0, 41.5]
    finally:
        reopened.close()


def test_report_section_only_when_estimates_exist() -> None:
    tracker = Tracker()
    tracker.record(_usage(100), "gpt-4o", at=AT)
    assert "Estimate vs billed" not in render_text(tracker)
    _fill(tracker)
    text = render_text(tracker, width=160)
    assert "Estimate vs billed input tokens" in text
    line = next(line for line in text.splitlines() if "gpt-4o" in line and "+30" in line)
    assert "330" in line and "300" in line and "16.7%" in line and "30.0%" in line and "+10.0%" in line
    assert json.dumps(_fields(drift(tracker)[0]))  # rows are plain data


# -- drift reads only the records that carry an estimate -------------------------------------------------


class _Watched(MemoryStore):
    """A memory store that keeps the queries `history` answered and the records it returned."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[Query] = []
        self.returned: list[Record] = []

    def history(self, query: Query, limit: int | None = None) -> list[Record]:
        found = super().history(query, limit)
        self.queries.append(query)
        self.returned.extend(found)
        return found


class _WatchedSQLite(SQLiteStore):
    """A SQLite store that keeps the records `history` returned."""

    returned: list[Record]

    def history(self, query: Query, limit: int | None = None) -> list[Record]:
        found = super().history(query, limit)
        self.returned = [*getattr(self, "returned", []), *found]
        return found


def _fill_with_noise(tracker: Tracker) -> None:
    """`_fill`'s records among 500 records without an estimate, in the same hours and models."""
    for i in range(250):
        tracker.record(_usage(100 + i), "gpt-4o", at=AT + timedelta(minutes=i % 90))
    _fill(tracker)
    for i in range(250):
        tracker.record(_usage(50), "claude-sonnet-4-5", at=AT + timedelta(minutes=i % 90))


def test_drift_reads_only_records_with_an_estimate_from_the_store() -> None:
    store = _Watched()
    tracker = Tracker(store=store)
    _fill_with_noise(tracker)
    rows = drift(tracker)
    _check(rows)
    assert [dict(q.filters) for q in store.queries] == [{"estimated": True, "status": "complete"}]
    assert len(store.returned) == 5  # the compared calls, nothing else
    assert all(r.estimated_input_tokens is not None for r in store.returned)
    assert rows == drift(tracker.history())  # the same rows as reading the whole history


def test_drift_on_sqlite_reads_only_records_with_an_estimate(tmp_path: Path) -> None:
    store = _WatchedSQLite(tmp_path / "ledger.db")
    tracker = Tracker(store=store)
    try:
        _fill_with_noise(tracker)
        rows = drift(tracker)
        assert len(store.returned) == 5 and all(r.estimated_input_tokens is not None for r in store.returned)
        _check(rows)
        assert rows == drift(tracker.history())
    finally:
        store.close()


def test_report_drift_section_reads_only_estimated_records() -> None:
    store = _Watched()
    tracker = Tracker(store=store)
    _fill_with_noise(tracker)
    assert "Estimate vs billed input tokens" in render_text(tracker, width=160)
    assert all(r.estimated_input_tokens is not None for r in store.returned)
    assert len(store.returned) == 6  # every record with an estimate (in the report range: all)
