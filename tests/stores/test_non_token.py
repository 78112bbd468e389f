"""Non-token charges in stores: each record keeps the part of its cost not paid for tokens (`Cost.non_token`:
requests, searches, durations, pages, …) and summaries sum it per group, from raw rows and every rollup
(hourly, daily, price versions, sessions), through reset, prune and reprice; an old SQLite or Postgres
ledger is marked by its migration and filled by the tracker that opens it (the store is handed the parts
pricing recomputes: `fill_non_token`), where the stored usage and price rule give them exactly."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tokentrail as tt
from tests.stores._downgrade import postgres_v5_undone, sqlite_v9_undone
from tokentrail._record import Record, to_timestamp_us
from tokentrail._types import Cost
from tokentrail.pricing.parts import RecomputedParts
from tokentrail.stores._session_rows import SessionQuery
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
    """`rounds` of every call, 20 minutes apart (so over hours and two days), agents a0/a1, sessions
    s0–s2."""
    records = []
    for i in range(rounds * len(CALLS)):
        usage, model, provider = CALLS[i % len(CALLS)]
        at = T0 + timedelta(minutes=20 * i) + timedelta(days=i % 2)
        records.append(tracker.record(usage, model, provider, agent=f"a{i % 2}", session=f"s{i % 3}", at=at))
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


PRUNED_BEFORE = T0 + timedelta(hours=1)


def sqlite_v8_ledger(path: Path, version: Callable[[Record], Cost] | None = other_model) -> list[Record]:
    """A ledger written by today's store (4 rounds), repriced by `version` into "sonar" (None: no version),
    its first hour pruned, then taken back to v8 (no amounts anywhere); returns the records written."""
    with SQLiteStore(path) as store:
        tracker = Tracker(store=store)
        written = write(tracker, rounds=4)
        if version is not None:
            store.reprice(Query(), version, "sonar")
        store.prune(to_timestamp_us(PRUNED_BEFORE))
    assert any(r.non_token_units for r in written if r.timestamp < PRUNED_BEFORE)  # so the documented 0 shows
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in sqlite_v9_undone():
        conn.execute(statement)
    assert conn.execute("SELECT count(*) FROM ledger WHERE extra LIKE '%\"nt\"%'").fetchone()[0] == 0
    conn.close()
    return written


def kept_of(written: list[Record]) -> list[Record]:
    return [r for r in written if r.timestamp >= PRUNED_BEFORE]


def session_parts(store: Any) -> dict[str, int]:
    _, rows = store.sessions(SessionQuery(sort="session", descending=False, limit=1000))
    return {row.session: row.non_token_units for row in rows}


def test_a_v8_sqlite_ledger_gains_its_non_token_amounts(tmp_path: Path) -> None:
    """Written by today's store, taken back to v8 (no amounts anywhere), reopened by a tracker: it fills
    every raw row, rollup and price version from the stored usage and rule; pruned hours keep 0."""
    path = tmp_path / "ledger.db"
    kept = kept_of(sqlite_v8_ledger(path))
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


def test_the_store_alone_fills_nothing_until_given_the_parts(tmp_path: Path) -> None:
    """The migration only marks the ledger (stores know records, not prices): opened without a tracker,
    every part reads 0 and the store says it waits; `fill_non_token` with the parts pricing recomputes
    fills the rows, the rollups (hourly, daily, sessions) and the price version, once."""
    path = tmp_path / "ledger.db"
    kept = kept_of(sqlite_v8_ledger(path))
    with SQLiteStore(path) as store:
        assert store.non_token_unfilled()
        assert all(r.non_token_units == 0 for r in store.history(Query()))
        assert store.summary(Query(), ())[0].non_token_cost_units == 0
        assert set(session_parts(store).values()) == {0}
        version_parts = [other_model(r).non_token_units for r in kept]
        filled = store.fill_non_token(RecomputedParts())
        assert filled == sum(1 for r in kept if r.non_token_units) + sum(1 for p in version_parts if p) > 0
        assert not store.non_token_unfilled()
        assert store.fill_non_token(RecomputedParts()) == 0  # once
        assert {r.id: r.non_token_units for r in store.history(Query())} == {
            r.id: r.non_token_units for r in kept
        }
        assert store.summary(Query(), ())[0].non_token_cost_units == sum(r.non_token_units for r in kept)
        by_day = {row.group["day"]: row.non_token_cost_units for row in store.summary(Query(), ("day",))}
        assert by_day == {day: part for day, (_, part) in sums_by(kept, lambda r: r.timestamp.date()).items()}
        assert session_parts(store) == {
            name: part for name, (_, part) in sums_by(kept, lambda r: r.session).items()
        }
        assert store.summary(Query(prices="sonar"), ())[0].non_token_cost_units == sum(version_parts)
    with SQLiteStore(path) as store:
        assert not store.non_token_unfilled()  # the mark went with the fill


def test_records_written_between_the_migration_and_the_fill_count_once(tmp_path: Path) -> None:
    """Records appended before the fill already carry their parts: the fill leaves them as they are."""
    path = tmp_path / "ledger.db"
    kept = kept_of(sqlite_v8_ledger(path, version=None))
    fresh = write(Tracker(), rounds=1)  # made elsewhere, with their parts
    with SQLiteStore(path) as store:
        for record in fresh:
            store.append(record)
        store.flush()
        assert store.summary(Query(), ())[0].non_token_cost_units == sum(r.non_token_units for r in fresh)
        store.fill_non_token(RecomputedParts())
        assert store.summary(Query(), ())[0].non_token_cost_units == sum(
            r.non_token_units for r in kept + fresh
        )
        assert session_parts(store) == {
            name: part for name, (_, part) in sums_by(kept + fresh, lambda r: r.session).items()
        }


def unpriced_sonar(record: Record) -> Cost:
    """The recorded price, except sonar-pro calls, which this version leaves unpriced."""
    if record.model == "sonar-pro":
        return Cost(priced=False, reason="not in this version")
    return tt.price(record.usage, record.model or "", record.provider, at=record.timestamp)


def version_part(price_fn: Callable[[Record], Cost], records: list[Record]) -> int:
    return sum(cost.non_token_units for cost in map(price_fn, records) if cost.priced)


def test_price_versions_made_before_and_after_the_migration_are_moved_by_the_fill(tmp_path: Path) -> None:
    """A version from before v9 (no parts) and one made after the migration but before the fill (its
    parts known, the recorded ones not yet): after the fill, each version's sums are its own parts,
    whether it prices a record or leaves it unpriced."""
    path = tmp_path / "ledger.db"
    kept = kept_of(sqlite_v8_ledger(path, version=unpriced_sonar))
    with SQLiteStore(path) as store:
        store.reprice(Query(), other_model, "after")
        store.reprice(Query(), unpriced_sonar, "unpriced after")
        store.fill_non_token(RecomputedParts())
        for name, price_fn in (
            ("sonar", unpriced_sonar),
            ("after", other_model),
            ("unpriced after", unpriced_sonar),
        ):
            assert store.summary(Query(prices=name), ())[0].non_token_cost_units == version_part(
                price_fn, kept
            )
            by_agent = {
                r.group["agent"]: r.non_token_cost_units
                for r in store.summary(Query(prices=name), ("agent",))
            }
            assert by_agent == {
                agent: version_part(price_fn, [r for r in kept if r.agent == agent]) for agent in ("a0", "a1")
            }
        assert store.summary(Query(), ())[0].non_token_cost_units == sum(r.non_token_units for r in kept)


def test_a_tracker_that_cannot_fill_logs_it_and_the_next_one_fills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.db"
    kept = kept_of(sqlite_v8_ledger(path))

    def broken(self: RecomputedParts, record: Record) -> int:
        raise RuntimeError("prices unreadable")

    with SQLiteStore(path) as store:
        monkeypatch.setattr(RecomputedParts, "part_of", broken)
        with caplog.at_level(logging.WARNING, logger="tokentrail"):
            tracker = Tracker(store=store)
        assert "could not fill the non-token parts" in caplog.text and "prices unreadable" in caplog.text
        assert store.non_token_unfilled()
        assert tracker.totals().non_token_cost_units == 0  # nothing half done
        monkeypatch.undo()
        tracker = Tracker(store=store)
        assert not store.non_token_unfilled()
        assert tracker.totals().non_token_cost_units == sum(r.non_token_units for r in kept)


def test_two_stores_on_one_ledger_fill_it_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    kept = kept_of(sqlite_v8_ledger(path))
    with SQLiteStore(path) as first, SQLiteStore(path) as second:
        assert first.non_token_unfilled() and second.non_token_unfilled()
        assert first.fill_non_token(RecomputedParts()) > 0
        assert second.fill_non_token(RecomputedParts()) == 0
        assert not second.non_token_unfilled()
        assert second.summary(Query(), ())[0].non_token_cost_units == sum(r.non_token_units for r in kept)


def test_a_cli_command_that_opens_a_migrated_ledger_fills_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tokentrail.cli import app

    path = tmp_path / "ledger.db"
    kept = kept_of(sqlite_v8_ledger(path))
    result = CliRunner().invoke(app, ["report", "--store", f"sqlite:///{path}", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert Decimal(json.loads(result.output)["totals"]["non_token_cost"]) == sum(
        (r.non_token_cost or Decimal(0) for r in kept), start=Decimal(0)
    )
    with SQLiteStore(path) as store:
        assert not store.non_token_unfilled()


def test_a_new_ledger_waits_for_nothing(tmp_path: Path, postgres_server: str) -> None:
    import uuid

    from tokentrail.stores.postgres import PostgresStore

    with SQLiteStore(tmp_path / "new.db") as store:
        assert not store.non_token_unfilled()
    store = PostgresStore(postgres_server, schema=f"tt_test_{uuid.uuid4().hex[:12]}", spool=tmp_path)
    try:
        assert not store.non_token_unfilled()
    finally:
        store.drop_schema()
        store.close()


def test_stores_do_not_import_pricing() -> None:
    """Data flows one way: stores know records, not prices (the parts a migration cannot know are
    computed above them and handed in)."""
    import ast

    import tokentrail.stores

    for source in Path(tokentrail.stores.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not [n for n in names if n.startswith("tokentrail.pricing")], source.name


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


def postgres_v4_ledger(url: str, schema: str, spool: Path, version: Callable[[Record], Cost]) -> list[Record]:
    """As `sqlite_v8_ledger`, for Postgres (its v5 is the SQLite ledger's v9): the ledger in `schema` taken
    back to v4; returns the records written."""
    import psycopg

    from tokentrail.stores.postgres import PostgresStore

    store = PostgresStore(url, schema=schema, spool=spool)
    try:
        written = write(Tracker(store=store), rounds=4)
        store.reprice(Query(), version, "sonar")
        store.prune(to_timestamp_us(PRUNED_BEFORE))
    finally:
        store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in postgres_v5_undone(schema):
            conn.execute(statement)
    return written


@pytest.fixture
def postgres_schema(postgres_server: str, tmp_path: Path) -> Iterator[str]:
    """A schema of its own on the test server, dropped afterwards."""
    import uuid

    import psycopg

    schema = f"tt_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_v4_postgres_ledger_gains_its_non_token_amounts(
    postgres_server: str, postgres_schema: str, tmp_path: Path
) -> None:
    """As the SQLite test above, for Postgres (its v5 is the SQLite ledger's v9)."""
    from tokentrail.stores.postgres import PostgresStore

    kept = kept_of(postgres_v4_ledger(postgres_server, postgres_schema, tmp_path, other_model))
    store = PostgresStore(postgres_server, schema=postgres_schema, spool=tmp_path)
    try:
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
        store.close()


def test_a_v4_postgres_ledger_waits_for_its_parts_until_given_them(
    postgres_server: str, postgres_schema: str, tmp_path: Path
) -> None:
    """As the SQLite tests above, for Postgres: the migration only marks the ledger; records appended and a
    version made before the fill keep their parts; `fill_non_token` fills the rows, the hourly cells, the
    sessions and both versions (one of them leaving sonar-pro unpriced), once, whichever store runs it."""
    from tokentrail.stores.postgres import PostgresStore

    kept = kept_of(postgres_v4_ledger(postgres_server, postgres_schema, tmp_path, unpriced_sonar))
    fresh = write(Tracker(), rounds=1)
    store = PostgresStore(postgres_server, schema=postgres_schema, spool=tmp_path)
    other = PostgresStore(postgres_server, schema=postgres_schema, spool=tmp_path / "other")
    try:
        assert store.non_token_unfilled() and other.non_token_unfilled()
        assert all(r.non_token_units == 0 for r in store.history(Query()))
        assert set(session_parts(store).values()) == {0}
        for record in fresh:
            store.append(record)
        store.flush()
        store.reprice(Query(), other_model, "after")
        filled = store.fill_non_token(RecomputedParts())
        # the "sonar" version keeps a cost only where it differs: the sonar-pro calls, unpriced
        assert filled == sum(1 for r in kept if r.non_token_units) > 0
        assert other.fill_non_token(RecomputedParts()) == 0
        assert not store.non_token_unfilled() and not other.non_token_unfilled()
        everything = kept + fresh
        assert {r.id: r.non_token_units for r in store.history(Query())} == {
            r.id: r.non_token_units for r in everything
        }
        assert store.summary(Query(), ())[0].non_token_cost_units == sum(
            r.non_token_units for r in everything
        )
        assert session_parts(store) == {
            name: part for name, (_, part) in sums_by(everything, lambda r: r.session).items()
        }
        sonar = store.summary(Query(prices="sonar"), ())[0]  # made before `fresh`: they keep their own
        assert sonar.non_token_cost_units == version_part(unpriced_sonar, kept) + sum(
            r.non_token_units for r in fresh
        )
        after = store.summary(Query(prices="after"), ())[0]
        assert after.non_token_cost_units == version_part(other_model, everything)
    finally:
        other.close()
        store.close()
