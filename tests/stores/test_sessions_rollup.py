"""The per-session rollup (`store.sessions(...)`, issue 20 point 6): its rows equal a full recomputation from
the records after appends, concurrent appends, replays, reprice, prune, reset, import and schema migration,
on the memory store, SQLite and the real Postgres; and the list it answers (window, search, every sort key,
pages) equals the one summaries give (`_from_summaries`, the path for stores without the rollup). Each row
carries the exact non-token part of its cost (issue 17 point 3: web searches here), through all of these."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import tokentrail as tt
from tests.stores._downgrade import (
    postgres_v5_undone,
    postgres_v6_undone,
    sqlite_v9_undone,
    sqlite_v10_undone,
)
from tokentrail.server._sessions import (
    SORT_KEYS,
    SessionListing,
    _from_summaries,
    list_sessions,
    rows_of_records,
)
from tokentrail.stores._session_rows import SessionQuery, SessionRow
from tokentrail.stores.base import Query, Store
from tokentrail.stores.memory import MemoryStore
from tokentrail.stores.sqlite import SQLiteStore

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 6, 3, 9, 0, tzinfo=timezone.utc)
SESSIONS = ("s0", "s1", "s2", "Straße-ß", 'quote"s', "x'; DROP TABLE records;--", "🦜 emoji ✓", None)
AGENTS = ("planner", "Researcher", "writer", None)
MODELS = ("gpt-4o", "gpt-4o-mini", "my-local-model")  # the last one is unpriced


def write(tracker: tt.Tracker, count: int, start: int = 0, step: timedelta = timedelta(minutes=7)) -> None:
    """`count` calls over sessions, agents, priced and unpriced models and hours (durations exact in
    binary, so summed call times compare exactly); one call in four also searches the web (a charge that
    is not tokens)."""
    for i in range(start, start + count):
        tracker.record(
            tt.Usage(100 + 13 * i, 20 + i % 7, reasoning_tokens=i % 3, web_searches=int(i % 4 == 1)),
            MODELS[i % len(MODELS)],
            session=SESSIONS[i % len(SESSIONS)],
            agent=AGENTS[(i // 3) % len(AGENTS)],
            duration_ms=None if i % 5 == 0 else 250.0 + (i % 4) * 0.5,
            at=T0 + step * i,
        )


def listed(store: Any, **asked: Any) -> dict[str, SessionRow]:
    total, rows = store.sessions(
        SessionQuery(asked.get("since"), asked.get("until"), asked.get("search"), "session", False, 10**6, 0)
    )
    assert total == len(rows)
    return {row.session: row for row in rows}


def recomputed(tracker: tt.Tracker) -> dict[str, SessionRow]:
    return rows_of_records(tracker.history())


def check(tracker: tt.Tracker, charged: bool = True) -> dict[str, SessionRow]:
    """The rollup's rows equal the recomputation from every record (and there are some; `charged`: with
    non-token charges, as `write` makes)."""
    store = tracker.store
    tracker.flush()
    expected = recomputed(tracker)
    assert expected
    assert any(row.non_token_units for row in expected.values()) == charged
    assert listed(store) == expected
    return expected


def test_appends_in_batches_and_one_by_one(make_store: Callable[[], Store]) -> None:
    tracker = tt.Tracker(store=make_store())
    write(tracker, 150)
    first = check(tracker)
    write(tracker, 90, start=150)
    second = check(tracker)
    assert second["s1"].calls > first["s1"].calls and second["s1"].last_us > first["s1"].last_us
    assert second["s1"].agents == ("Researcher", "planner")  # sorted, each once
    assert any(row.unpriced_calls for row in second.values())
    assert None not in second  # calls without a session are no session


def test_replayed_records_are_counted_once(make_store: Callable[[], Store]) -> None:
    store = make_store()
    if isinstance(store, MemoryStore):
        pytest.skip("the memory store does not recognise replayed ids (it holds one process's own calls)")
    tracker = tt.Tracker(store=store)
    write(tracker, 60)
    expected = check(tracker)
    for record in tracker.history():
        store.append(record)  # a replay (the same ids), as a spool or an import might
    tracker.flush()
    assert listed(store) == expected


def test_concurrent_appends_from_threads(
    make_store: Callable[[], Store], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Threads append through one store, and (SQLite, Postgres) through several stores on one ledger."""
    store = make_store()
    stores: list[Any] = [store]
    if isinstance(store, SQLiteStore):
        stores += [SQLiteStore(store.path, batch_size=16, flush_interval=0.01) for _ in range(3)]
    elif hasattr(store, "schema"):
        from tokentrail.stores.postgres import PostgresStore

        url = request.getfixturevalue("postgres_server")
        stores += [
            PostgresStore(
                url, schema=store.schema, batch_size=16, flush_interval=0.01, spool=tmp_path / f"spool{n}"
            )
            for n in range(3)
        ]
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        tracker = tt.Tracker(store=stores[n % len(stores)])
        barrier.wait()
        write(tracker, 40, start=n * 40, step=timedelta(minutes=1))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in stores[1:]:
        other.close()
    tracker = tt.Tracker(store=store)
    expected = check(tracker)
    assert sum(row.calls for row in expected.values()) == 320 - 320 // len(SESSIONS)


def test_reprice_leaves_the_recorded_costs(make_store: Callable[[], Store]) -> None:
    store: Any = make_store()
    tracker = tt.Tracker(store=store)
    write(tracker, 80)
    expected = check(tracker)
    assert store.reprice(Query(), lambda r: tt.Cost(priced=True, parts=(7,)), "flat") > 0
    assert listed(store) == expected  # the list shows costs as recorded


def test_prune_keeps_counting_the_pruned_calls(make_store: Callable[[], Store]) -> None:
    store: Any = make_store()
    tracker = tt.Tracker(store=store)
    write(tracker, 120)
    before = check(tracker)
    cut = T0 + timedelta(minutes=7 * 60)
    assert store.prune(int(cut.timestamp() * 1_000_000)) > 0
    assert listed(store) == before  # like the hourly rollups, the rows still count pruned calls
    summed = {row.group["session"]: row.calls for row in tracker.summary("session") if row.group["session"]}
    assert {name: row.calls for name, row in before.items()} == summed
    write(tracker, 30, start=120)
    added = rows_of_records(
        r for r in tracker.history() if r.timestamp_us >= _us(T0 + timedelta(minutes=7 * 120))
    )
    after = listed(store)
    assert added and after.keys() == before.keys()
    for name, row in after.items():
        new = added.get(name, SessionRow(name))
        assert (row.calls, row.cost_units, row.non_token_units) == (
            before[name].calls + new.calls,
            before[name].cost_units + new.cost_units,
            before[name].non_token_units + new.non_token_units,
        )
        assert row.first_us == before[name].first_us
        assert row.last_us == max(before[name].last_us, new.last_us)


def _us(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


@pytest.mark.parametrize(
    "forget",
    [
        {"session": "s1"},
        {"agent": "Researcher"},
        {"model": "my-local-model"},
        {"since": 37, "until": 301},  # minutes after T0: cuts through two hours
        {"session": "s2", "since": 126, "until": 130},  # inside one hour
        {"since": 0, "until": 7 * 60 * 100},  # everything
    ],
    ids=["a-session", "an-agent", "unpriced-model", "time-range", "inside-an-hour", "everything"],
)
def test_reset_rebuilds_the_sessions_it_touched(
    make_store: Callable[[], Store], forget: dict[str, Any]
) -> None:
    store: Any = make_store()
    tracker = tt.Tracker(store=store)
    write(tracker, 120)
    check(tracker)
    calls = tracker.totals().calls
    filters = {k: v for k, v in forget.items() if k not in ("since", "until")}
    since = forget.get("since")
    until = forget.get("until")
    query = Query.build(
        filters,
        None if since is None else int((T0 + timedelta(minutes=since)).timestamp() * 1_000_000),
        None if until is None else int((T0 + timedelta(minutes=until)).timestamp() * 1_000_000),
    )
    removed = store.reset(query)
    assert removed > 0
    after = recomputed(tracker)
    assert listed(store) == after
    assert tracker.totals().calls == calls - removed


def test_reset_after_prune_keeps_exact_sums(make_store: Callable[[], Store]) -> None:
    """Calls pruned before a reset stay counted (sums exact, as the hourly rollup holds them); the first
    and last call stay inside the hours still counted."""
    store: Any = make_store()
    tracker = tt.Tracker(store=store)
    write(tracker, 120)
    store.prune(int((T0 + timedelta(hours=5)).timestamp() * 1_000_000))
    store.reset(Query.build({"agent": "planner"}))
    by_session = {row.group["session"]: row for row in tracker.summary("session") if row.group["session"]}
    rows = listed(store)
    assert rows.keys() == by_session.keys()
    for name, row in rows.items():
        summary = by_session[name]
        assert (row.calls, row.unpriced_calls, row.cost_units, row.non_token_units) == (
            summary.calls,
            summary.unpriced_calls,
            summary.cost_units,
            summary.non_token_cost_units,
        )
        assert (row.input_tokens, row.output_tokens) == (
            summary.usage.input_tokens,
            summary.usage.output_tokens,
        )
        assert "planner" not in row.agents
        kept = [r.timestamp_us for r in tracker.history(session=name)]
        if kept:
            assert row.last_us == max(kept)  # the latest hours were not pruned
        assert row.first_us <= row.last_us


def test_import_adds_to_the_rollup_once(tmp_path: Path) -> None:
    from tokentrail.cli import app

    source = f"sqlite:///{tmp_path / 'source.db'}"
    tracker = tt.Tracker(store=source)
    write(tracker, 90)
    expected = check(tracker)
    tracker.store.close()  # type: ignore[attr-defined]
    runner = CliRunner()
    out = tmp_path / "all.jsonl"
    assert runner.invoke(app, ["export", "--store", source, "-o", str(out)]).exit_code == 0
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    for _ in range(2):  # the second import skips every record
        result = runner.invoke(app, ["import", str(out), "--store", copy, "--chunk-size", "17"])
        assert result.exit_code == 0, result.output
    imported = tt.Tracker(store=copy)
    assert check(imported) == expected
    imported.store.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", [4, 5, 6])
def test_an_older_sqlite_ledger_with_data_gains_the_rollup(tmp_path: Path, version: int) -> None:
    path = tmp_path / f"ledger_v{version}.db"
    shutil.copy(FIXTURES / f"ledger_v{version}.db", path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == version
    conn.close()
    with SQLiteStore(path) as store:
        tracker = tt.Tracker(store=store)
        expected = check(tracker, charged=False)
        assert len(expected) >= 5  # the fixtures' sessions, hostile names included
        write(tracker, 20)  # and the rollup goes on from there
        check(tracker)
    conn = sqlite3.connect(path)
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"sessions_last", "dims_session", "ledger_dim"} <= indexes
    conn.close()


def test_a_v7_sqlite_ledger_with_pruned_hours_is_filled_from_the_rollups(tmp_path: Path) -> None:
    """Made at v8, taken back to v7 (the v8 objects dropped), reopened: the rows are rebuilt, the pruned
    calls counted, the first and last call exact where raw rows hold them; the non-token part is what the
    kept records' parts sum to (a pruned record's is not known before v9, see test_non_token.py)."""
    path = tmp_path / "ledger.db"
    with SQLiteStore(path) as store:
        tracker = tt.Tracker(store=store)
        write(tracker, 120)
        expected = check(tracker)
        store.prune(int((T0 + timedelta(hours=3)).timestamp() * 1_000_000))
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (
        *sqlite_v9_undone(),  # the later version's objects go too
        "DROP TABLE sessions",
        "DROP INDEX dims_session",
        "DROP INDEX ledger_dim",
        "UPDATE schema_version SET version = 7",
    ):
        conn.execute(statement)
    conn.close()
    with SQLiteStore(path) as store:
        tracker = tt.Tracker(store=store)
        rows = listed(store)
        kept = recomputed(tracker)
    assert {name: (r.calls, r.cost_units, r.unpriced_calls, r.agents) for name, r in rows.items()} == {
        name: (r.calls, r.cost_units, r.unpriced_calls, r.agents) for name, r in expected.items()
    }
    assert {name: r.non_token_units for name, r in rows.items()} == {
        name: kept[name].non_token_units if name in kept else 0 for name in expected
    }
    assert any(r.non_token_units for r in rows.values())
    for name, row in rows.items():
        assert row.last_us == expected[name].last_us
        # the first call lies in a pruned hour: the rebuilt row keeps that hour's start
        assert expected[name].first_us - 3_600_000_000 < row.first_us <= expected[name].first_us


def test_a_v9_sqlite_ledger_gains_each_sessions_non_token_part(tmp_path: Path) -> None:
    """Made today with pruned hours, taken back to v9 (no `sessions.non_token`), reopened: each session's
    part is summed from the hourly rollup, the pruned calls' parts included (as the rows count them)."""
    path = tmp_path / "ledger.db"
    cut = T0 + timedelta(hours=3)
    with SQLiteStore(path) as store:
        tracker = tt.Tracker(store=store)
        write(tracker, 120)
        check(tracker)
        assert any(r.non_token_units for r in tracker.history(until=cut))  # some parts only rollups keep
        assert store.prune(_us(cut)) > 0
        expected = listed(store)
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in sqlite_v10_undone():
        conn.execute(statement)
    assert "non_token" not in {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
    conn.close()
    with SQLiteStore(path) as store:
        assert listed(store) == expected
        assert store._conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 10


def reopened(store: Any, url: str, spool: Path, statements: list[str]) -> Any:
    """A Postgres store's ledger taken back by `statements` (the store closed first) and opened again by a
    tracker (which fills the non-token parts a migration from before v5 marks): every version up to
    today's is applied once more."""
    from tokentrail.stores.postgres import PostgresStore

    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
    again = PostgresStore(url, schema=store.schema, spool=spool)
    tt.Tracker(store=again)
    with psycopg.connect(url) as conn:
        versions = conn.execute(
            f'SELECT version FROM "{store.schema}".schema_migrations ORDER BY 1'
        ).fetchall()
    assert versions == [(1,), (2,), (3,), (4,), (5,), (6,)]
    return again


def test_a_v5_postgres_ledger_gains_each_sessions_non_token_part(
    postgres_server: str, tmp_path: Path
) -> None:
    """As the SQLite test above, for Postgres (its v6 is the SQLite ledger's v10)."""
    from tokentrail.stores.postgres import PostgresStore

    schema = f"tt_test_{uuid.uuid4().hex[:12]}"
    cut = T0 + timedelta(hours=3)
    store = PostgresStore(postgres_server, schema=schema, spool=tmp_path)
    try:
        tracker = tt.Tracker(store=store)
        write(tracker, 120)
        check(tracker)
        assert any(r.non_token_units for r in tracker.history(until=cut))
        assert store.prune(_us(cut)) > 0
        expected = listed(store)
        store = reopened(store, postgres_server, tmp_path, postgres_v6_undone(schema))
        assert listed(store) == expected
    finally:
        store.drop_schema()
        store.close()


def test_a_v3_postgres_ledger_with_data_gains_the_rollup(postgres_server: str, tmp_path: Path) -> None:
    from tokentrail.stores.postgres import PostgresStore

    schema = f"tt_test_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(postgres_server, schema=schema, spool=tmp_path)
    try:
        tracker = tt.Tracker(store=store)
        write(tracker, 100)
        expected = check(tracker)
        undone = [
            *postgres_v5_undone(schema),  # the later versions' columns go too
            f'DROP TABLE "{schema}".sessions',
            f'DROP INDEX "{schema}".records_session',
            f'DELETE FROM "{schema}".schema_migrations WHERE version = 4',
        ]
        store = reopened(store, postgres_server, tmp_path, undone)
        assert listed(store) == expected
    finally:
        store.drop_schema()
        store.close()


LISTINGS = [
    SessionListing(),
    SessionListing(since=T0 + timedelta(hours=6)),
    SessionListing(until=T0 + timedelta(hours=2, minutes=5)),
    SessionListing(since=T0 + timedelta(minutes=50), until=T0 + timedelta(hours=4, minutes=10)),
    SessionListing(since=T0 + timedelta(hours=3, minutes=1), until=T0 + timedelta(hours=3, minutes=9)),
    SessionListing(search="STRASSE"),  # 'ß' case-folds to 'ss'
    SessionListing(search="research"),  # an agent, case-folded
    SessionListing(search="🦜"),
    SessionListing(search="no such thing"),
    SessionListing(search="KELVIN"),  # the Kelvin sign case-folds to 'k'
    SessionListing(search='"hi"'),
    SessionListing(search="say"),
    SessionListing(search="k\\s"),
    SessionListing(search="DROP TABLE"),
    SessionListing(search='", "'),  # JSON punctuation between two agents is no match
    *(SessionListing(sort=key, descending=descending) for key in SORT_KEYS for descending in (True, False)),
    SessionListing(sort="cost", limit=2, offset=2),
    SessionListing(sort="calls", descending=False, limit=3, offset=1, since=T0 + timedelta(hours=1)),
]


def test_the_list_equals_the_one_summaries_give(make_store: Callable[[], Store]) -> None:
    tracker = tt.Tracker(store=make_store())
    write(tracker, 130)
    # a session whose calls lie before and after a window but none inside it
    for at in (T0 + timedelta(minutes=1), T0 + timedelta(hours=9)):
        tracker.record(tt.Usage(10, 1), "gpt-4o", session="around", agent="edge", at=at)
    # agents a search finds only by case folding, or whose JSON text escapes a character
    for agent in ("\u212aelvin", 'say "hi"', "back\\slash"):
        tracker.record(tt.Usage(10, 1), "gpt-4o", session=f"of {agent}", agent=agent, at=T0)
    # equal sort values, told apart by the session id
    for name in ("tie-b", "tie-a"):
        tracker.record(tt.Usage(10, 1), "gpt-4o", session=name, at=T0 + timedelta(hours=2))
    tracker.flush()
    for listing in LISTINGS:
        got = list_sessions(tracker, listing)
        want = _from_summaries(tracker, listing)
        assert (got.total, got.rows) == (want.total, want.rows), listing
    window = SessionListing(
        since=T0 + timedelta(hours=3, minutes=1), until=T0 + timedelta(hours=3, minutes=9)
    )
    assert "around" not in {row.session for row in list_sessions(tracker, window).rows}
    assert list_sessions(tracker, SessionListing(search="straße")).total == 1
    assert [row.session for row in list_sessions(tracker, SessionListing(search="kelvin")).rows] == [
        "of \u212aelvin"
    ]
    assert list_sessions(tracker, SessionListing(search='", "')).total == 0


def test_a_sort_key_no_store_knows_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot sort sessions by 'cheapest'"):
        SessionQuery(sort="cheapest")
