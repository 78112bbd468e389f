"""SQLite store specifics: many processes, kill -9, hostile values, bad files, Tracker URLs."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokentrail as tt
from tests.stores.every_unit import EVERY_UNIT, NEW_COUNTS
from tests.stores.fixtures.make_ledger_v4 import answers
from tokentrail._record import to_timestamp_us
from tokentrail._types import TOKEN_FIELDS
from tokentrail.errors import StoreError
from tokentrail.server._sessions import rows_of_records
from tokentrail.stores._session_rows import SessionQuery
from tokentrail.stores.base import Query, provider_cost_units
from tokentrail.stores.sqlite import SCHEMA_VERSION, SQLiteStore
from tokentrail.tracker import Tracker

FIXTURES = Path(__file__).parent / "fixtures"
USAGE = tt.Usage(input_tokens=1234, output_tokens=567, cache_read_tokens=200)
PROCESSES, PER_PROCESS = 8, 5_000


def _writer(path: str, worker: int) -> None:
    tracker = Tracker(store=SQLiteStore(path, batch_size=1000))
    for i in range(PER_PROCESS):
        tracker.record(USAGE, "gpt-4o", agent=f"w{worker}", session=str(i % 7))
    tracker.store.close()  # type: ignore[attr-defined]
    os._exit(0 if tracker.sink_errors == 0 else 3)


def test_many_processes_one_file_exact_totals(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteStore(path).close()  # create the schema once, before the race
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(path, n)) for n in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    with SQLiteStore(path) as store:
        tracker = Tracker(store=store)
        totals = tracker.totals()
        total = PROCESSES * PER_PROCESS
        assert totals.calls == total
        assert totals.input_tokens == total * USAGE.input_tokens
        assert totals.cost_units == total * tt.price(USAGE, "gpt-4o").total_units  # type: ignore[attr-defined]
        by_agent = {row.group["agent"]: row.calls for row in tracker.summary(by="agent")}
        assert by_agent == {f"w{n}": PER_PROCESS for n in range(PROCESSES)}
        conn = sqlite3.connect(path)
        distinct, rows = conn.execute("SELECT count(DISTINCT id), count(*) FROM records").fetchone()
        conn.close()
        assert distinct == rows == total


CHILD = textwrap.dedent(
    """
    import sys
    import tokentrail as tt
    from tokentrail.stores.sqlite import SQLiteStore
    from tokentrail.tracker import Tracker
    tracker = Tracker(store=SQLiteStore(sys.argv[1], durable=True))
    while True:
        record = tracker.record(tt.Usage(input_tokens=10, output_tokens=1), "gpt-4o", agent="killed")
        print(f"{record.id:032x}", flush=True)
    """
)


def test_kill_9_loses_nothing_acknowledged_when_durable(tmp_path: Path) -> None:
    path = str(tmp_path / "durable.db")
    child = subprocess.Popen([sys.executable, "-c", CHILD, path], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acknowledged: list[str] = []
    deadline = time.monotonic() + 30
    while len(acknowledged) < 200 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acknowledged.append(line.strip())
    child.kill()  # SIGKILL
    child.wait()
    acknowledged.extend(line.strip() for line in child.stdout if line.strip())
    assert len(acknowledged) >= 200
    with SQLiteStore(path) as store:
        stored = {f"{record.id:032x}" for record in store.history(Query())}
    missing = [i for i in acknowledged if i not in stored]
    assert missing == []


HOSTILE = ["x'; DROP TABLE records;--", "a" * 10_240, "nul\x00byte", "🦜 emoji ✓", 'quote"s', ""]


def test_hostile_values_are_stored_and_reported_verbatim(tmp_path: Path) -> None:
    tracker = Tracker(store=f"sqlite:///{tmp_path / 'hostile.db'}")
    for value in HOSTILE:
        tracker.record(USAGE, value, agent=value, session=value, user=value, tool=value, tags=[value, "t"])
    rows = tracker.summary(by=("agent", "model", "user", "tool", "session"))
    assert sorted(tuple(row.group.values()) for row in rows) == sorted((v,) * 5 for v in HOSTILE)
    for value in HOSTILE:
        assert tracker.totals(agent=value).calls == 1
        assert tracker.totals(tag=value).calls == 1
        [record] = tracker.history(agent=value)
        assert record.agent == record.model == value and value in record.tags
    assert {row.group["tag"] for row in tracker.summary(by="tag")} == {*HOSTILE, "t"}
    tracker.store.close()  # type: ignore[attr-defined]


def test_file_is_private_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    SQLiteStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(path)


def test_corrupted_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="corrupt"):
        SQLiteStore(path)
    with pytest.raises(StoreError):
        Tracker(store=f"sqlite:///{path}")


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE something (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a tokentrail store"):
        SQLiteStore(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_directory_is_a_store_error(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(StoreError):
            SQLiteStore(locked / "ledger.db")
    finally:
        locked.chmod(0o700)


def test_locked_database_is_a_store_error_and_record_still_returns(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    tracker = Tracker(store=SQLiteStore(path, durable=True, timeout=0.05))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        record = tracker.record(USAGE, "gpt-4o")  # must not raise into the caller
        assert record.cost_units is not None
        assert tracker.sink_errors == 1
        with pytest.raises(StoreError, match="lock"):
            tracker.store.append(record)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    tracker.record(USAGE, "gpt-4o")
    assert tracker.totals().calls == 1
    tracker.store.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["/proc/tokentrail-ledger.db", "file/ledger.db"])
def test_unwritable_paths_are_store_errors(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("a plain file, not a directory")
    with pytest.raises(StoreError):
        SQLiteStore(where if where.startswith("/") else tmp_path / where)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///x.db?colour=red", "mysql://x"])
def test_bad_urls_are_store_errors(url: str) -> None:
    with pytest.raises(StoreError):
        Tracker(store=url)


def test_reads_see_own_writes_and_survive_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    tracker = Tracker(store=url)
    tracker.record(USAGE, "gpt-4o", agent="a")
    assert tracker.totals().calls == 1  # pending writes are flushed before a query
    tracker.store.close()  # type: ignore[attr-defined]
    reopened = Tracker(store=url + "?durable=1")
    assert reopened.totals(agent="a").calls == 1
    reopened.store.close()  # type: ignore[attr-defined]


def test_background_writer_flushes_on_interval(tmp_path: Path) -> None:
    path = tmp_path / "interval.db"
    store = SQLiteStore(path, flush_interval=0.05)
    Tracker(store=store).record(USAGE, "gpt-4o")
    deadline = time.monotonic() + 5
    count = 0
    while time.monotonic() < deadline and count == 0:
        time.sleep(0.05)
        conn = sqlite3.connect(path)
        count = conn.execute("SELECT count(*) FROM records").fetchone()[0]
        conn.close()
    assert count == 1
    store.close()


def test_queued_records_are_written_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "atexit.db"
    script = (
        "import tokentrail as tt\n"
        "from tokentrail.tracker import Tracker\n"
        f"tracker = Tracker(store='sqlite:///{path}')\n"
        "for _ in range(123):\n"
        "    tracker.record(tt.Usage(input_tokens=1, output_tokens=1), 'gpt-4o')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with SQLiteStore(path) as store:
        assert len(store.history(Query())) == 123


def test_a_store_inherited_through_fork_refuses_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "fork.db")
    tracker = Tracker(store=store)
    pid = os.fork()
    if pid == 0:  # child: the record is still returned, the store error only counted
        tracker.record(USAGE, "gpt-4o")
        os._exit(0 if tracker.sink_errors == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tracker.totals().calls == 0
    store.close()


def test_queued_records_survive_a_failed_flush(tmp_path: Path) -> None:
    path = tmp_path / "retry.db"
    store = SQLiteStore(path, timeout=0.05, flush_interval=60)
    tracker = Tracker(store=store)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    tracker.record(USAGE, "gpt-4o")
    with pytest.raises(StoreError, match="lock"):
        store.flush()
    blocker.execute("ROLLBACK")
    blocker.close()
    assert tracker.totals().calls == 1
    store.close()


def _v3_ledger(path: Path) -> int:
    """A ledger file as tokentrail wrote it at schema v3: one priced gpt-4o call (raw row and rollup)."""
    from tokentrail.stores.sqlite import _schema_v1, _schema_v2, _schema_v3

    cost = tt.price(USAGE, "gpt-4o").total_units
    hour = 1_748_772_000_000_000 // 3_600_000_000  # 2025-06-01 10:00 UTC
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in [*_schema_v1(), *_schema_v2(), *_schema_v3()]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (3)")
    keys = {"agent": "old", "model": "gpt-4o", "provider": "openai", "tags": "[]", "path": "[]"}
    keys |= {"status": "complete", "priced": 1}
    tokens = {"t_input_tokens": 1234, "t_output_tokens": 567, "t_cache_read_tokens": 200, "t_requests": 1}
    raw = {"id": f"{7:032x}", "ts": hour * 3_600_000_000, "hour": hour, **keys, "cost": str(cost)}
    rule = tt.price(USAGE, "gpt-4o").rule
    assert rule is not None
    raw |= {"duration": 12.5, **tokens, "rule": json.dumps(rule.as_dict(), sort_keys=True, default=str)}
    conn.execute(
        f"INSERT INTO records ({', '.join(map(repr, raw))}) VALUES ({', '.join('?' * len(raw))})",
        [*raw.values()],
    )
    rollup = {"cell": "v3-cell", "hour": hour, **keys, "calls": 1, "cost": str(cost), "duration": 12.5}
    rollup |= {
        "timed": 1,
        "timed_output": 567,
        "provider_cost": "0",
        "provider_calls": 0,
        "cost_on_provider": "0",
    }
    rollup |= tokens
    conn.execute(
        f"INSERT INTO rollup_hour ({', '.join(map(repr, rollup))}) VALUES ({', '.join('?' * len(rollup))})",
        [*rollup.values()],
    )
    conn.close()
    return cost


def test_v3_ledger_migrates_to_price_versions(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    cost = _v3_ledger(path)
    with SQLiteStore(path) as store:
        tracker = Tracker(store=store)
        [record] = tracker.history()
        assert (record.id, record.agent, record.cost_units, record.usage) == (7, "old", cost, USAGE)
        assert record.price_rule == tt.price(USAGE, "gpt-4o").rule  # v3 kept the rule's JSON in the row
        assert tracker.totals().cost_units == cost
        assert store.price_versions() == []
        tracker.record(USAGE, "gpt-4o", agent="new")
        assert store.reprice(Query(), lambda r: tt.Cost(priced=True, parts=(1,)), "one") == 2
        assert tracker.totals(prices="one").cost_units == 2
        assert {row.group["agent"]: row.calls for row in tracker.summary("agent")} == {"old": 1, "new": 1}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 10
    tables = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
    }
    assert {"costs", "rollup_prices", "price_versions"} <= tables
    assert "records_hour" not in tables
    conn.close()


def _rows_of(rows: list[tt.SummaryRow]) -> list[tuple[object, ...]]:
    return [
        (r.group, r.calls, r.unpriced_calls, r.cost_units, r.input_tokens, r.output_tokens, r.timed_calls)
        for r in rows
    ]


def test_daily_and_hourly_rollups_agree_with_the_memory_store(tmp_path: Path) -> None:
    """Random windows over 5 days read days, hours and raw rows; every answer matches the memory store."""
    import random

    chance = random.Random(6)
    start = datetime(2025, 6, 1, tzinfo=timezone.utc)
    memory, ledger = Tracker(), Tracker(store=SQLiteStore(tmp_path / "ledger.db", batch_size=50))
    for i in range(400):
        at = start + timedelta(minutes=chance.randrange(5 * 24 * 60))
        usage = tt.Usage(input_tokens=chance.randrange(1, 5000), output_tokens=chance.randrange(1, 900))
        model = chance.choice(["gpt-4o", "gpt-4o-mini", "acme-private"])
        for tracker in (memory, ledger):
            tracker.record(usage, model, agent=f"a{i % 3}", at=at, duration_ms=float(i % 7) or None)

    def compare() -> None:
        for _ in range(40):
            first = start + timedelta(minutes=chance.randrange(-60, 6 * 24 * 60))
            window = {"since": first, "until": first + timedelta(minutes=chance.randrange(1, 4 * 24 * 60))}
            for by in [(), ("agent", "model"), ("day",), ("hour",), ("model", "month")]:
                assert _rows_of(ledger.summary(by, **window)) == _rows_of(memory.summary(by, **window))
        assert _rows_of(ledger.summary(("agent", "day"))) == _rows_of(memory.summary(("agent", "day")))

    compare()
    assert ledger.reset(agent="a1") == memory.reset(agent="a1") > 0
    compare()
    cut = to_timestamp_us(start + timedelta(days=2, hours=7, minutes=30))
    assert ledger.store.prune(cut) == memory.store.prune(cut) > 0  # type: ignore[attr-defined]
    assert _rows_of(ledger.summary(("agent", "day"))) == _rows_of(memory.summary(("agent", "day")))
    assert len(ledger.history()) == len(memory.history())
    ledger.store.close()  # type: ignore[attr-defined]


def test_a_batch_mixing_replayed_and_new_records_counts_each_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ledger.db", batch_size=10_000, flush_interval=60)
    tracker = Tracker(store=store)
    first = [tracker.record(USAGE, "gpt-4o", agent="a") for _ in range(3)]
    store.flush()
    for record in [*first, first[0]]:  # replayed, and one of them twice in the same batch
        store.append(record)
    fresh = tracker.record(USAGE, "gpt-4o", agent="b")
    store.append(fresh)  # the same new record twice in one batch
    store.flush()
    assert {row.group["agent"]: row.calls for row in tracker.summary("agent")} == {"a": 3, "b": 1}
    assert [r.id for r in tracker.history()] == [*(r.id for r in first), fresh.id]
    store.close()


V7_COUNTS = NEW_COUNTS  # a ledger from before v7 holds none of them


def _without_nt(extra: str | None) -> object:
    if extra is None:
        return None
    values = json.loads(extra)
    values.pop("nt", None)
    return values or None


def _table_rows(path: Path, names: tuple[str, ...]) -> dict[str, list[tuple[object, ...]]]:
    """Every row of each table, the columns a table had before v7 only (checking the v7 ones are 0; v9's
    non-token amounts are left out: test_non_token_sqlite checks what the migration fills in)."""
    conn = sqlite3.connect(path)
    rows = {}
    for name in names:
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({name})")]
        old = [c for c in columns if c.removeprefix("t_") not in V7_COUNTS and c != "non_token"]
        if len(old) < len([c for c in columns if c != "non_token"]):
            sums = ", ".join(f'coalesce(sum("{c}"), 0)' for c in columns if c not in old and c != "non_token")
            assert set(conn.execute(f"SELECT {sums} FROM {name}").fetchone()) == {0}, name
        picked = ", ".join(f'"{c}"' for c in old)
        found = conn.execute(f"SELECT {picked} FROM {name}").fetchall()
        if "extra" in old:  # a `ledger` row's JSON, read without v9's non-token amount (`nt`)
            at = old.index("extra")
            found = [(*row[:at], _without_nt(row[at]), *row[at + 1 :]) for row in found]
        rows[name] = sorted(found, key=repr)
    conn.close()
    return rows


def _as_before_v7(answered: dict[str, Any]) -> dict[str, Any]:
    """A store's answers without the counts added in v7, which must all be 0 in a ledger from before."""
    for key in ("history", "history_v2"):
        for record in answered[key]:
            added = {name: record["usage"].pop(name) for name in V7_COUNTS}
            assert set(added.values()) == {0}, record
    return answered


def test_v4_ledger_migrates_to_v5_value_for_value(tmp_path: Path) -> None:
    """A ledger written by the v4 store (fixtures/make_ledger_v4.py) reads back after the migration exactly
    as v4 read it: every field of every record (ids, costs, rules, rare token kinds, provider costs,
    context, estimates, floats), summaries, price version `v2`; rollups and price tables untouched."""
    path = tmp_path / "v4.db"
    shutil.copy(FIXTURES / "ledger_v4.db", path)
    expected = json.loads((FIXTURES / "ledger_v4.json").read_text())
    kept = ("rollup_hour", "rollup_day", "rollup_prices", "costs", "price_versions", "rules")
    before = _table_rows(path, kept)
    with SQLiteStore(path) as store:
        assert _as_before_v7(answers(store)) == expected
    assert _table_rows(path, kept) == before
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(10,)]
    kinds = dict(
        conn.execute("SELECT name, type FROM sqlite_master WHERE name IN ('records', 'ledger', 'dims')")
    )
    assert kinds == {"records": "view", "ledger": "table", "dims": "table"}
    lengths = sorted(length for (length,) in conn.execute("SELECT length(id) FROM ledger"))
    assert lengths == [16] * (len(expected["history"]) - 1) + [33]  # one imported id is 2**130 + 5
    conn.close()


def test_a_migrated_ledger_recognizes_replays_and_takes_new_records(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    shutil.copy(FIXTURES / "ledger_v4.db", path)
    with SQLiteStore(path, batch_size=10) as store:
        tracker = Tracker(store=store)
        old = store.history(Query())
        calls = tracker.totals().calls
        for record in old:  # every record replayed, the out-of-range id too
            store.append(record)
        store.flush()
        assert tracker.totals().calls == calls
        assert [r.id for r in store.history(Query())] == [r.id for r in old]
        tracker.record(USAGE, "gpt-4o", agent="a0")
        assert tracker.totals().calls == calls + 1
        assert store.reset(Query.build({"agent": "imported"}, None, None)) == 1
        assert tracker.totals().calls == calls


def test_a_large_batch_of_replays_and_new_records_counts_each_once(tmp_path: Path) -> None:
    """Batches larger than one multi-row INSERT: replays among them are skipped row by row."""
    store = SQLiteStore(tmp_path / "ledger.db", batch_size=100_000, flush_interval=60)
    tracker = Tracker(store=store)
    first = [tracker.record(USAGE, "gpt-4o", agent="a", duration_ms=float(i)) for i in range(130)]
    store.flush()
    new = [tracker.record(USAGE, "gpt-4o", agent="b") for _ in range(75)]
    store.flush()
    store.reset(Query.build({"agent": "b"}, None, None))  # new again: gone from the file
    for record in [*first, *new, new[0], *first[:7]]:
        store.append(record)
    store.flush()
    assert {row.group["agent"]: row.calls for row in tracker.summary("agent")} == {"a": 130, "b": 75}
    assert tracker.totals().timed_calls == 130
    assert [r.id for r in tracker.history()] == [r.id for r in [*first, *new]]
    store.close()


# Each nullable ledger column (cost, duration, ttft, extra) NULL in every row, in none or in some: the
# store writes the all-NULL ones as literals and binds the rest, in chunks and transactions made small here.
_SOMETIMES = st.sampled_from(["never", "always", "sometimes"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 60),
    unpriced=_SOMETIMES,
    timed=_SOMETIMES,
    streamed=_SOMETIMES,
    rare=_SOMETIMES,
)
def test_rows_and_rollups_are_exact_whichever_columns_are_null(
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    count: int,
    unpriced: str,
    timed: str,
    streamed: str,
    rare: str,
) -> None:
    """Whatever mix of NULL and given values each nullable column has in a batch (split over several
    column chunks and transactions, replays among them), every record reads back field for field, the
    summaries equal the memory store's, each hourly rollup cell holds the exact Python sums of its raw
    rows (the non-token part of the cost included), and so does each session's row."""
    import random

    from tokentrail.stores import sqlite as ledger_module

    monkeypatch.setattr(ledger_module, "_RECORDS_A_CHUNK", 7)
    monkeypatch.setattr(ledger_module, "_RECORDS_A_TRANSACTION", 23)
    chance = random.Random(seed)

    def given_in(mode: str) -> bool:
        return mode == "always" or (mode == "sometimes" and chance.random() < 0.5)

    start = datetime(2025, 6, 1, 9, 40, tzinfo=timezone.utc)
    reference = Tracker()
    for i in range(count):
        usage = tt.Usage(
            input_tokens=chance.randrange(200, 5000),
            output_tokens=chance.randrange(0, 900),
            cache_read_tokens=chance.randrange(0, 100),
            input_audio_tokens=chance.randrange(1, 50) if given_in(rare) else 0,
            web_searches=chance.randrange(1, 3) if given_in(rare) else 0,
        )
        reference.record(
            usage,
            "acme-private" if given_in(unpriced) else chance.choice(["gpt-4o", "claude-sonnet-4-5"]),
            agent=f"a{i % 3}",
            session=f"s{i % 4}" if i % 5 else None,
            at=start + timedelta(minutes=chance.randrange(0, 150)),
            duration_ms=chance.uniform(1, 900) if given_in(timed) else None,
            ttft_ms=chance.uniform(1, 90) if given_in(streamed) else None,
            provider_cost="0.00125" if given_in(rare) else None,
            context={"service_tier": "flex"} if given_in(rare) else None,
            estimated_input_tokens=chance.randrange(0, 5000) if given_in(rare) else None,
        )
    records = reference.history()
    store = SQLiteStore(":memory:", batch_size=10**9, flush_interval=60)
    for record in records[: count // 2]:
        store.append(record)
    store.flush()
    for record in [*records, *records[: count // 3]]:  # earlier ones replayed, some twice in one batch
        store.append(record)
    store.flush()
    assert store.history(Query()) == records
    by = ("agent", "model", "hour")
    assert _rows_of(Tracker(store=store).summary(by)) == _rows_of(reference.summary(by))
    cells = store._conn.execute(
        "SELECT hour, agent, model, sum(calls), bigsum(cost), total(duration), sum(timed),"
        " bigsum(provider_cost), sum(provider_calls), sum(t_input_audio_tokens), sum(t_web_searches),"
        " bigsum(non_token) FROM rollup_hour GROUP BY hour, agent, model"
    ).fetchall()
    expected: dict[tuple[object, ...], list[Any]] = {}
    for r in records:
        sums = expected.setdefault((r.timestamp_us // 3_600_000_000, r.agent, r.model), [0] * 9)
        reported = provider_cost_units(r.provider_cost) if r.provider_cost is not None else None
        for at, value in enumerate(
            [
                1,
                r.cost_units or 0,
                r.duration_ms or 0.0,
                r.duration_ms is not None,
                reported or 0,
                reported is not None,
                r.usage.input_audio_tokens,
                r.usage.web_searches,
                r.non_token_units,
            ]
        ):
            sums[at] += value
    assert len(cells) == len(expected)
    for hour, agent, model, calls, cost, duration, *counted in cells:
        timed_calls, reported, reported_calls, audio, web, non_token = counted
        want = expected[(hour, agent, model)]
        assert [calls, int(cost), timed_calls, int(reported), reported_calls, audio, web, int(non_token)] == [
            want[0],
            want[1],
            want[3],
            want[4],
            want[5],
            want[6],
            want[7],
            want[8],
        ]
        assert duration == pytest.approx(want[2])
    _, sessions = store.sessions(SessionQuery(sort="session", descending=False, limit=10**6))
    by_session = rows_of_records(records)
    assert [row.session for row in sessions] == sorted(by_session)
    for row in sessions:
        want_row = by_session[row.session]
        assert row.duration_ms == pytest.approx(want_row.duration_ms)  # summed in another order
        assert replace(row, duration_ms=0.0) == replace(want_row, duration_ms=0.0)
    store.close()


def test_a_flush_failing_midway_keeps_what_it_committed_and_requeues_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush commits in transactions of `_RECORDS_A_TRANSACTION` records: when one fails, those before
    it stay committed, it and the ones after it stay queued, and the next flush writes each once."""
    from tokentrail.stores import sqlite as ledger_module

    monkeypatch.setattr(ledger_module, "_RECORDS_A_TRANSACTION", 10)
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path, batch_size=10**9, flush_interval=60)
    tracker = Tracker(store=store)
    records = [tracker.record(USAGE, "gpt-4o", agent=f"a{i % 4}") for i in range(35)]
    write = store._write
    calls = []

    def third_fails(batch: list[tt.Record]) -> None:
        calls.append(len(batch))
        if len(calls) == 3:
            raise StoreError("disk full (simulated)")
        write(batch)

    monkeypatch.setattr(store, "_write", third_fails)
    with pytest.raises(StoreError, match="simulated"):
        store.flush()
    assert calls == [10, 10, 10]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 20
    assert conn.execute("SELECT sum(calls) FROM rollup_hour").fetchone()[0] == 20
    conn.close()
    assert list(store._pending) == records[20:]
    store.flush()
    assert calls == [10, 10, 10, 10, 5]
    assert tracker.totals().calls == 35
    assert [r.id for r in tracker.history()] == [r.id for r in records]
    store.close()


def test_v5_ledger_migrates_to_v6_with_an_index_for_the_estimated_filter(tmp_path: Path) -> None:
    """A ledger written by the v5 store (fixtures/make_ledger_v5.py) gains the partial index
    `ledger_estimated` and nothing else: every table keeps its rows, and the store answers exactly as v5
    did, `history(estimated=True)` too, which now reads the index."""
    from tokentrail.stores.sqlite import _RECORD_COLUMNS, _where

    path = tmp_path / "v5.db"
    shutil.copy(FIXTURES / "ledger_v5.db", path)
    expected = json.loads((FIXTURES / "ledger_v5.json").read_text())
    estimated = expected.pop("estimated")
    tables = (
        "ledger",
        "dims",
        "rollup_hour",
        "rollup_day",
        "rollup_prices",
        "costs",
        "price_versions",
        "rules",
    )
    before = _table_rows(path, tables)
    with SQLiteStore(path) as store:
        assert _as_before_v7(answers(store)) == expected
        got = store.history(Query.build({"estimated": True}, None, None))
        assert [f"{r.id:032x}" for r in got] == estimated != []
    assert _table_rows(path, tables) == before
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(10,)]
    where, params, _ = _where(Query.build({"estimated": True}, None, None), raw=True)
    columns = ", ".join(f'"{c}"' for c in _RECORD_COLUMNS)
    plan = conn.execute(f"EXPLAIN QUERY PLAN SELECT {columns} FROM records WHERE {where}", params).fetchall()
    assert any("ledger_estimated" in str(step) for step in plan), plan
    conn.close()


def test_every_unit_has_a_column_in_the_current_schema() -> None:
    """A new Usage count needs a new migration: the last one stores exactly the counts a Usage carries."""
    from tokentrail.stores.sqlite import _TOKEN_FIELDS_V1, _TOKEN_FIELDS_V7

    assert TOKEN_FIELDS == _TOKEN_FIELDS_V7
    assert _TOKEN_FIELDS_V7[len(_TOKEN_FIELDS_V1) :] == V7_COUNTS
    assert all(getattr(EVERY_UNIT, name) > 0 for name in TOKEN_FIELDS)


def test_v6_ledger_migrates_to_v7_and_keeps_every_value(tmp_path: Path) -> None:
    """A ledger written by the v6 store (fixtures/make_ledger_v6.py, the v6 package with its 16-count
    Usage) answers after the migration exactly as v6 did (the new counts 0), keeps every row of every
    table, and then stores, sums and reprices a record carrying every unit."""
    path = tmp_path / "v6.db"
    shutil.copy(FIXTURES / "ledger_v6.db", path)
    expected = json.loads((FIXTURES / "ledger_v6.json").read_text())
    estimated = expected.pop("estimated")
    tables = (
        "ledger",
        "dims",
        "rollup_hour",
        "rollup_day",
        "rollup_prices",
        "costs",
        "price_versions",
        "rules",
    )
    before = _table_rows(path, tables)
    at = datetime(2025, 6, 3, 8, 30, tzinfo=timezone.utc)
    with SQLiteStore(path) as store:
        assert _as_before_v7(answers(store)) == expected
        got = store.history(Query.build({"estimated": True}, None, None))
        assert [f"{r.id:032x}" for r in got] == estimated != []
    assert _table_rows(path, tables) == before
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)] == [(10,)]
    for table in ("rollup_hour", "rollup_day", "rollup_prices", "records"):
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        assert {f"t_{name}" for name in TOKEN_FIELDS} <= columns, table
    conn.close()

    with SQLiteStore(path) as store:
        tracker = Tracker(store=store)
        calls, cost = tracker.totals().calls, tracker.totals().cost_units
        tracker.record(EVERY_UNIT, "gpt-4o", agent="every-unit", at=at)
        store.flush()
        [record] = store.history(Query.build({"agent": "every-unit"}, None, None))
        assert record.usage == EVERY_UNIT
        assert record.cost_units == tt.price(EVERY_UNIT, "gpt-4o", at=at).total_units
        totals = tracker.totals()
        assert (totals.calls, totals.cost_units) == (calls + 1, cost + record.cost_units)
        [row] = tracker.summary("agent", agent="every-unit")
        assert row.usage == EVERY_UNIT
        [day] = tracker.summary("day", since=at.replace(hour=0, minute=0), until=at + timedelta(hours=1))
        assert all(getattr(day.usage, name) == getattr(EVERY_UNIT, name) for name in V7_COUNTS)
        assert (
            store.reprice(
                Query.build({"agent": "every-unit"}, None, None),
                lambda r: tt.Cost(priced=True, parts=(3,)),
                "v3",
            )
            == 1
        )
        [repriced] = tracker.summary("agent", agent="every-unit", prices="v3")
        assert (repriced.usage, repriced.cost_units) == (EVERY_UNIT, 3)
    conn = sqlite3.connect(path)
    row = conn.execute(
        "SELECT " + ", ".join(f'"t_{n}"' for n in V7_COUNTS) + " FROM records WHERE agent = 'every-unit'"
    ).fetchone()
    assert row == tuple(getattr(EVERY_UNIT, n) for n in V7_COUNTS)
    for table in ("rollup_hour", "rollup_day"):
        sums = conn.execute(
            "SELECT "
            + ", ".join(f'sum("t_{n}")' for n in V7_COUNTS)
            + f" FROM {table} WHERE agent = 'every-unit'"
        ).fetchone()
        assert sums == row, table
    conn.close()
