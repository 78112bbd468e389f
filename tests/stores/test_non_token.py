"""Non-token charges in stores: each record keeps the part of its cost not paid for tokens (`Cost.non_token`:
requests, searches, durations, pages, …) and summaries sum it per group, from raw rows and every rollup
(hourly, daily, price versions), through reset, prune and reprice; old SQLite and Postgres ledgers migrate
with the amounts filled in where the stored usage and price rule give them exactly."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import tokentrail as tt
from tests.stores._downgrade import postgres_v5_undone, sqlite_v9_undone
from tokentrail._record import Record, to_timestamp_us
from tokentrail._types import Cost
from tokentrail.stores.base import PruningStore, Query, RepricingStore, Store
from tokentrail.stores.sqlite import SQLiteStore
from tokentrail.tracker import Tracker

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=timezone.utc)
# (usage, model, provider): the priced ones carry a per-request fee, web and file searches, audio hours,
# pages; one is tokens only, one is unpriced.
CALLS = [
    (tt.Usage(1_000, 3_000), "sonar-pro", "perplexity"),
    (tt.Usage(2_000, 100, web_searches=3, storage_searches=2), "gpt-4o", "openai"),
    (tt.Usage(audio_ms=90_500, input_audio_ms=90_500), "whisper-1", "openai"),
    (tt.Usage(input_document_pages=12, input_annotated_document_pages=5), "mistral-ocr-latest", "mistral"),
    (tt.Usage(1_000, 100), "gpt-4o", "openai"),
    (tt.Usage(1_000, 100), "acme-private", None),
]


def write(tracker: Tracker, rounds: int = 3) -> list[Record]:
    """`rounds` of every call, 20 minutes apart (so over hours and two days), agents a0/a1."""
    records = []
    for i in range(rounds * len(CALLS)):
        usage, model, provider = CALLS[i % len(CALLS)]
        at = T0 + timedelta(minutes=20 * i) + timedelta(days=i % 2)
        records.append(tracker.record(usage, model, provider, agent=f"a{i % 2}", at=at))
    tracker.flush()
    return records


def expected_part(record: Record) -> int:
    if record.cost_units is None:
        return 0
    cost = tt.price(record.usage, record.model or "", record.provider, at=record.timestamp)
    assert cost.total_units == record.cost_units
    return cost.non_token_units


def sums_by(records: list[Record], key: Callable[[Record], object]) -> dict[object, tuple[int, int]]:
    found: dict[object, tuple[int, int]] = {}
    for record in records:
        cost, part = found.get(key(record), (0, 0))
        found[key(record)] = (cost + (record.cost_units or 0), part + record.non_token_units)
    return found


def test_records_keep_their_non_token_part(make_store: Callable[[], Store]) -> None:
    tracker = Tracker(store=make_store())
    written = write(tracker)
    assert {r.model for r in written if r.non_token_units} == {
        "sonar-pro",
        "gpt-4o",
        "whisper-1",
        "mistral-ocr-latest",
    }
    for record in written:
        assert record.non_token_units == expected_part(record)
    history = tracker.store.history(Query())
    assert [(r.id, r.non_token_units, r.non_token_cost) for r in history] == [
        (r.id, r.non_token_units, r.non_token_cost) for r in sorted(written, key=lambda r: r.timestamp_us)
    ]
    assert next(r for r in history if r.cost_units is None).non_token_cost is None


def test_summaries_sum_the_non_token_part_from_rollups_and_raw_rows(make_store: Callable[[], Store]) -> None:
    tracker = Tracker(store=make_store())
    written = write(tracker)
    assert sum(r.non_token_units for r in written) > 0
    totals = tracker.totals()
    assert totals.non_token_cost_units == sum(r.non_token_units for r in written)
    assert totals.cost_units == sum(r.cost_units or 0 for r in written)
    by_model = {
        row.group["model"]: (row.cost_units, row.non_token_cost_units) for row in tracker.summary("model")
    }
    assert by_model == sums_by(written, lambda r: r.model)
    by_day = {row.group["day"]: row.non_token_cost_units for row in tracker.summary("day")}  # daily rollup
    assert by_day == {day: part for day, (_, part) in sums_by(written, lambda r: r.timestamp.date()).items()}
    by_hour = {row.group["hour"]: row.non_token_cost_units for row in tracker.summary("hour")}
    assert by_hour == {
        hour: part
        for hour, (_, part) in sums_by(
            written, lambda r: r.timestamp.replace(minute=0, second=0, microsecond=0)
        ).items()
    }
    # a window that cuts through hours: raw rows for the cut parts, rollups for the rest
    since, until = T0 + timedelta(minutes=30), T0 + timedelta(days=1, minutes=250)
    inside = [r for r in written if since <= r.timestamp < until]
    window = tracker.summary(since=since, until=until)
    assert sum(row.non_token_cost_units for row in window) == sum(r.non_token_units for r in inside)
    assert sum(row.non_token_cost for row in window) == sum(
        (tt.price(r.usage, r.model or "", r.provider, at=r.timestamp).non_token for r in inside if r.priced),
        start=0,
    )


def test_reset_and_prune_keep_the_sums_exact(make_store: Callable[[], Store]) -> None:
    store = make_store()
    tracker = Tracker(store=store)
    written = write(tracker)
    cut = T0 + timedelta(minutes=70)  # inside an hour
    store.reset(Query(since_us=to_timestamp_us(cut), until_us=to_timestamp_us(cut + timedelta(hours=5))))
    kept = [r for r in written if not cut <= r.timestamp < cut + timedelta(hours=5)]
    assert tracker.totals().non_token_cost_units == sum(r.non_token_units for r in kept)
    if isinstance(store, PruningStore):
        store.prune(to_timestamp_us(T0 + timedelta(days=1)))
        assert tracker.totals().non_token_cost_units == sum(r.non_token_units for r in kept)


def other_model(record: Record) -> Cost:
    """Price every record as perplexity/sonar (its own request fee) — a version that moves both parts."""
    return tt.price(record.usage, "sonar", "perplexity")


def test_a_price_version_moves_the_non_token_part(make_store: Callable[[], Store]) -> None:
    store = make_store()
    assert isinstance(store, RepricingStore)
    tracker = Tracker(store=store)
    written = write(tracker)
    store.reprice(Query(), other_model, "sonar")
    version = {r.id: other_model(r) for r in written}
    assert tracker.totals(prices="sonar").non_token_cost_units == sum(
        c.non_token_units for c in version.values()
    )
    by_agent = {r.group["agent"]: r.non_token_cost_units for r in tracker.summary("agent", prices="sonar")}
    assert by_agent == {
        agent: sum(version[r.id].non_token_units for r in written if r.agent == agent)
        for agent in ("a0", "a1")
    }
    for record in store.history(Query(prices="sonar")):
        assert record.non_token_units == version[record.id].non_token_units
    assert tracker.totals().non_token_cost_units == sum(r.non_token_units for r in written)  # recorded kept
    # repriced again into the same version: the version's sums move from the first to the second
    store.reprice(Query(), lambda r: tt.price(r.usage, r.model or "", r.provider, at=r.timestamp), "sonar")
    assert tracker.totals(prices="sonar").non_token_cost_units == sum(r.non_token_units for r in written)
    # a reset of part of an hour takes the version's change of those records out too
    cut = T0 + timedelta(minutes=10)
    store.reprice(Query(), other_model, "sonar")
    store.reset(Query(since_us=to_timestamp_us(cut), until_us=to_timestamp_us(cut + timedelta(minutes=30))))
    kept = [r for r in written if not cut <= r.timestamp < cut + timedelta(minutes=30)]
    assert tracker.totals(prices="sonar").non_token_cost_units == sum(
        version[r.id].non_token_units for r in kept
    )


# -- migrations ------------------------------------------------------------------------------------------


def test_a_v8_sqlite_ledger_gains_its_non_token_amounts(tmp_path: Path) -> None:
    """Written by today's store, taken back to v8 (no amounts anywhere), reopened: the migration fills
    every raw row, rollup and price version from the stored usage and rule; pruned hours keep 0."""
    path = tmp_path / "ledger.db"
    with SQLiteStore(path) as store:
        tracker = Tracker(store=store)
        written = write(tracker, rounds=4)
        store.reprice(Query(), other_model, "sonar")
        pruned_before = T0 + timedelta(hours=1)
        store.prune(to_timestamp_us(pruned_before))
    kept = [r for r in written if r.timestamp >= pruned_before]
    pruned = [r for r in written if r.timestamp < pruned_before]
    assert any(r.non_token_units for r in pruned)  # so the documented 0 shows
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in sqlite_v9_undone():
        conn.execute(statement)
    assert conn.execute("SELECT count(*) FROM ledger WHERE extra LIKE '%\"nt\"%'").fetchone()[0] == 0
    conn.close()
    with SQLiteStore(path) as store:
        tracker = Tracker(store=store)
        assert store.history(Query()) and all(
            r.non_token_units == expected_part(r) for r in store.history(Query())
        )
        assert tracker.totals().non_token_cost_units == sum(r.non_token_units for r in kept)
        by_day = {row.group["day"]: row.non_token_cost_units for row in tracker.summary("day")}
        assert by_day == {d: p for d, (_, p) in sums_by(kept, lambda r: r.timestamp.date()).items()} | {
            d: by_day[d] for d in by_day if d not in {r.timestamp.date() for r in kept}
        }
        version = sum(other_model(r).non_token_units for r in kept)
        assert tracker.totals(prices="sonar").non_token_cost_units == version
        for record in store.history(Query(prices="sonar")):
            assert record.non_token_units == other_model(record).non_token_units
        # new records after the migration add to the filled sums
        more = write(tracker, rounds=1)
        assert tracker.totals().non_token_cost_units == sum(r.non_token_units for r in kept + more)


def test_the_v4_fixture_ledger_migrates_with_its_web_searches_priced_apart(tmp_path: Path) -> None:
    """tests/stores/fixtures/ledger_v4.db (made by make_ledger_v4.py) holds gpt-4o calls with web searches:
    after the migrations, each record's part is what its rule's prices give (only records whose rule
    gives their stored total exactly); the rollups sum those."""
    import shutil

    path = tmp_path / "v4.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "ledger_v4.db", path)
    with SQLiteStore(path) as store:
        tracker = Tracker(store=store)
        history = store.history(Query())
        searched = [r for r in history if r.usage.web_searches and r.priced]
        assert searched and all(r.non_token_units > 0 for r in searched)
        for record in history:
            if record.priced and record.price_rule is not None and record.price_rule.prices:
                cost = tt.price(record.usage, record.model or "", record.provider, at=record.timestamp)
                if cost.total_units == record.cost_units:
                    assert record.non_token_units == cost.non_token_units
            else:
                assert record.non_token_units == 0
        rows = tracker.summary("agent")
        for row in rows:
            raw = [r for r in history if r.agent == row.group["agent"]]
            if row.calls == len(raw):  # agents whose rows were not pruned
                assert row.non_token_cost_units == sum(r.non_token_units for r in raw)


def test_a_v4_postgres_ledger_gains_its_non_token_amounts(postgres_server: str, tmp_path: Path) -> None:
    """As the SQLite test above, for Postgres (its v5 is the SQLite ledger's v9)."""
    import uuid

    import psycopg

    from tokentrail.stores.postgres import PostgresStore

    schema = f"tt_test_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(postgres_server, schema=schema, spool=tmp_path)
    try:
        tracker = Tracker(store=store)
        written = write(tracker, rounds=4)
        store.reprice(Query(), other_model, "sonar")
        pruned_before = T0 + timedelta(hours=1)
        store.prune(to_timestamp_us(pruned_before))
        store.close()
        kept = [r for r in written if r.timestamp >= pruned_before]
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            for statement in postgres_v5_undone(schema):
                conn.execute(statement)
        store = PostgresStore(postgres_server, schema=schema, spool=tmp_path)
        tracker = Tracker(store=store)
        history = store.history(Query())
        assert history and all(r.non_token_units == expected_part(r) for r in history)
        assert tracker.totals().non_token_cost_units == sum(r.non_token_units for r in kept) > 0
        assert tracker.totals(prices="sonar").non_token_cost_units == sum(
            other_model(r).non_token_units for r in kept
        )
        for record in store.history(Query(prices="sonar")):
            assert record.non_token_units == other_model(record).non_token_units
        more = write(tracker, rounds=1)
        assert tracker.totals().non_token_cost_units == sum(r.non_token_units for r in kept + more)
    finally:
        store.drop_schema()
        store.close()
