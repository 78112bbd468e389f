"""Retention: `Store.prune` drops old raw records but keeps the rollups, so summaries still count them;
`tokentrail prune --older-than`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tokentrail as tt
from tokentrail._record import Record, to_timestamp_us
from tokentrail._types import Cost
from tokentrail.cli import app
from tokentrail.stores.base import PruningStore, Query, RepricingStore, Store
from tokentrail.tracker import Tracker

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=timezone.utc)
USAGE = tt.Usage(input_tokens=1000, output_tokens=100)
GPT_4O = tt.price(USAGE, "gpt-4o").total_units

runner = CliRunner()


def pruning(make_store: Callable[[], Store]) -> Tracker:
    store = make_store()
    assert isinstance(store, PruningStore)
    return Tracker(store=store)


def ledger(tracker: Tracker) -> None:
    """Five calls: two on day 1 (10:00, 10:59), one at 11:30 on day 1, two on day 3."""
    for at, agent in [
        (T0, "a"),
        (T0 + timedelta(minutes=59), "b"),
        (T0 + timedelta(minutes=90), "a"),
        (T0 + timedelta(days=2), "a"),
        (T0 + timedelta(days=2, hours=5), "b"),
    ]:
        tracker.record(USAGE, "gpt-4o", agent=agent, at=at, duration_ms=100.0)


def prune(tracker: Tracker, before: datetime) -> int:
    return tracker.store.prune(to_timestamp_us(before))  # type: ignore[attr-defined,no-any-return]


def test_prune_drops_raw_rows_and_keeps_totals(make_store: Callable[[], Store]) -> None:
    tracker = pruning(make_store)
    ledger(tracker)
    assert tracker.store.raw_count(to_timestamp_us(T0 + timedelta(days=1))) == 3  # type: ignore[attr-defined]
    assert prune(tracker, T0 + timedelta(days=1)) == 3
    assert [r.timestamp for r in tracker.history()] == [
        T0 + timedelta(days=2),
        T0 + timedelta(days=2, hours=5),
    ]
    totals = tracker.totals()
    assert (totals.calls, totals.cost_units, totals.input_tokens) == (5, 5 * GPT_4O, 5000)
    assert totals.duration_ms == 500.0
    by_day = {row.group["day"]: row.calls for row in tracker.summary("day")}
    assert by_day == {T0.date(): 3, (T0 + timedelta(days=2)).date(): 2}
    by_agent = {row.group["agent"]: row.calls for row in tracker.summary("agent", since=T0.date())}
    assert by_agent == {"a": 3, "b": 2}


def test_prune_keeps_the_hour_the_cut_falls_in(make_store: Callable[[], Store]) -> None:
    tracker = pruning(make_store)
    ledger(tracker)
    assert prune(tracker, T0 + timedelta(minutes=100)) == 2  # 10:00 and 10:59; 11:30's hour is not over
    assert len(tracker.history()) == 3
    assert prune(tracker, T0 + timedelta(minutes=100)) == 0  # nothing left to drop


def test_records_after_prune_add_to_the_pruned_hours(make_store: Callable[[], Store]) -> None:
    tracker = pruning(make_store)
    ledger(tracker)
    prune(tracker, T0 + timedelta(days=1))
    tracker.record(USAGE, "gpt-4o", agent="a", at=T0 + timedelta(minutes=5))  # a late record, same hour
    assert tracker.totals().calls == 6
    assert {row.group["agent"]: row.calls for row in tracker.summary("agent")} == {"a": 4, "b": 2}
    assert len(tracker.history(until=T0 + timedelta(days=1))) == 1


def test_reset_after_prune_removes_the_pruned_records_too(make_store: Callable[[], Store]) -> None:
    tracker = pruning(make_store)
    ledger(tracker)
    prune(tracker, T0 + timedelta(days=1))
    assert tracker.reset(agent="a") == 3
    assert tracker.totals().calls == 2
    assert {row.group["agent"] for row in tracker.summary("agent")} == {"b"}


def test_price_version_of_pruned_records_still_answers(make_store: Callable[[], Store]) -> None:
    tracker = pruning(make_store)
    assert isinstance(tracker.store, RepricingStore)
    ledger(tracker)
    flat = 10**22

    def price(record: Record) -> Cost:
        return Cost(priced=True, parts=(flat,))

    tracker.store.reprice(Query(), price, "flat")  # type: ignore[attr-defined]
    prune(tracker, T0 + timedelta(days=1))
    assert tracker.totals(prices="flat").cost_units == 5 * flat
    assert tracker.totals().cost_units == 5 * GPT_4O


# -- CLI ----------------------------------------------------------------------------------------------


def sqlite_ledger(tmp_path: Path) -> str:
    """A ledger with 2 records 100 days old and 1 from an hour ago."""
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    tracker = Tracker(store=url)
    now = datetime.now(timezone.utc)
    tracker.record(USAGE, "gpt-4o", agent="old", at=now - timedelta(days=100))
    tracker.record(USAGE, "gpt-4o", agent="old", at=now - timedelta(days=100, hours=1))
    tracker.record(USAGE, "gpt-4o", agent="new", at=now - timedelta(hours=1))
    tracker.store.close()  # type: ignore[attr-defined]
    return url


def raw_rows(url: str) -> int:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
    finally:
        conn.close()


def test_cli_prune_dry_run_deletes_nothing(tmp_path: Path) -> None:
    url = sqlite_ledger(tmp_path)
    result = runner.invoke(app, ["prune", "--store", url, "--older-than", "90d", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Would drop 2 raw records" in result.output
    assert raw_rows(url) == 3


def test_cli_prune_keeps_reports(tmp_path: Path) -> None:
    url = sqlite_ledger(tmp_path)
    result = runner.invoke(app, ["prune", "--store", url, "--older-than", "90d"])
    assert result.exit_code == 0, result.output
    assert "Dropped 2 raw records" in result.output
    assert raw_rows(url) == 1
    tracker = Tracker(store=url)
    assert {row.group["agent"]: row.calls for row in tracker.summary("agent")} == {"old": 2, "new": 1}
    tracker.store.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("age", ["90", "0d", "ninety days", "-5d"])
def test_cli_prune_refuses_a_bad_age(tmp_path: Path, age: str) -> None:
    url = sqlite_ledger(tmp_path)
    result = runner.invoke(app, ["prune", "--store", url, "--older-than", age])
    assert result.exit_code == 2
    assert "--older-than" in result.output
    assert raw_rows(url) == 3


def test_cli_prune_missing_ledger(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["prune", "--store", f"sqlite:///{tmp_path / 'nope.db'}", "--older-than", "9d"]
    )
    assert result.exit_code == 1
    assert "No ledger" in result.output
