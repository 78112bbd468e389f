"""Postgres store specifics, on the REAL test server: many processes, outages and the spool (through a
TCP relay we cut, and by stopping the server itself), hostile values, bad URLs and schemas, partitions."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tokentrail as tt
from tests.conftest import (
    postgres_cluster,
    postgres_up,
    require_module,
    skip_or_fail,
    start_postgres,
    wait_for,
)
from tokentrail._record import Record, to_timestamp_us
from tokentrail._types import Cost
from tokentrail.errors import StoreError
from tokentrail.stores.base import Query
from tokentrail.tracker import Tracker

psycopg = require_module("psycopg", "POSTGRES", "pip install 'psycopg[binary]' psycopg-pool (the test extra)")
from tokentrail.stores.postgres import (  # noqa: E402
    SCHEMA_VERSION,
    PostgresStore,
    decode_text,
    encode_text,
    open_postgres_url,
)

USAGE = tt.Usage(input_tokens=1234, output_tokens=567, cache_read_tokens=200)
PROCESSES, PER_PROCESS = 8, 5_000
T0 = datetime(2025, 6, 1, 10, 0, tzinfo=timezone.utc)


def schema_name() -> str:
    return f"tt_test_{uuid.uuid4().hex[:12]}"


def drop(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def count_rows(url: str, schema: str) -> tuple[int, int]:
    """(rows, distinct ids) in the raw table, read straight from the server."""
    with psycopg.connect(url) as conn:
        row = conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{schema}".records').fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.fixture
def schema(postgres_server: str) -> Iterator[str]:
    name = schema_name()
    yield name
    drop(postgres_server, name)


@pytest.fixture
def store(postgres_server: str, schema: str, tmp_path: Path) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_server, schema=schema, spool=tmp_path / "spool", flush_interval=0.05)
    yield opened
    opened.close()


# -- many processes -----------------------------------------------------------------------------------------


def _writer(url: str, schema: str, spool: str, worker: int) -> None:
    store = PostgresStore(url, schema=schema, batch_size=1000, spool=spool)
    tracker = Tracker(store=store)
    for i in range(PER_PROCESS):
        tracker.record(USAGE, "gpt-4o", agent=f"w{worker}", session=str(i % 7))
    store.close()
    sys.exit(0 if tracker.sink_errors == 0 and store._spool.spooled == 0 else 3)


def test_many_processes_one_ledger_exact_totals(postgres_server: str, schema: str, tmp_path: Path) -> None:
    PostgresStore(postgres_server, schema=schema, spool=tmp_path).close()  # schema once, before the race
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_writer, args=(postgres_server, schema, str(tmp_path), n))
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
        assert worker.exitcode == 0
    total = PROCESSES * PER_PROCESS
    assert count_rows(postgres_server, schema) == (total, total)  # 0 lost, 0 duplicated
    with PostgresStore(postgres_server, schema=schema, spool=tmp_path) as store:
        tracker = Tracker(store=store)
        totals = tracker.totals()
        assert totals.calls == total
        assert totals.input_tokens == total * USAGE.input_tokens
        assert totals.cost_units == total * tt.price(USAGE, "gpt-4o").total_units  # type: ignore[attr-defined]
        by_agent = {row.group["agent"]: row.calls for row in tracker.summary(by="agent")}
        assert by_agent == {f"w{n}": PER_PROCESS for n in range(PROCESSES)}
    assert list(tmp_path.glob("*.jsonl")) == []  # nothing was spooled


# -- outages and the spool ----------------------------------------------------------------------------------


class Relay:
    """A TCP relay in front of the real server: `cut()` drops every connection and refuses new ones
    (the server looks unreachable to whoever connects through it), `restore()` lets them through again."""

    def __init__(self, target_port: int = 5432) -> None:
        self.target = ("127.0.0.1", target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def url(self, base: str) -> str:
        return base.replace("127.0.0.1:5432", f"127.0.0.1:{self.port}")

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            if listener is not None:
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
                listener.close()
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def relay() -> Iterator[Relay]:
    found = Relay()
    yield found
    found.cut()


def test_outage_spools_batches_and_replays_them_in_order(
    postgres_server: str, schema: str, tmp_path: Path, relay: Relay
) -> None:
    spool = tmp_path / "spool"
    store = PostgresStore(
        relay.url(postgres_server), schema=schema, batch_size=50, flush_interval=0.02, spool=spool, timeout=2
    )
    tracker = Tracker(store=store)
    for i in range(120):
        tracker.record(USAGE, "gpt-4o", agent="before", session=str(i))
    store.flush()
    relay.cut()
    for i in range(300):
        tracker.record(USAGE, "gpt-4o", agent="during", session=str(i))
    store.flush()  # the server is unreachable: this goes to the spool, it does not raise
    assert tracker.sink_errors == 0
    stats_spooled = store._spool.spooled
    assert stats_spooled >= 1
    (spooled,) = spool.glob("*.jsonl")
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    assert count_rows(postgres_server, schema) == (120, 120)
    relay.restore()
    for i in range(80):
        tracker.record(USAGE, "gpt-4o", agent="after", session=str(i))
    assert tracker.totals().calls == 500  # reading flushes: the spool is replayed first
    assert count_rows(postgres_server, schema) == (500, 500)
    assert {row.group["agent"]: row.calls for row in tracker.summary("agent")} == {
        "before": 120,
        "during": 300,
        "after": 80,
    }
    assert store.stats()["replayed_batches"] >= stats_spooled
    store.close()
    assert list(spool.glob("*.jsonl")) == []


def test_replaying_batches_already_committed_counts_nothing_twice(
    postgres_server: str, schema: str, tmp_path: Path
) -> None:
    """A batch can reach the spool after the server committed it (the connection died before the
    acknowledgement): its replay must not count it again."""
    spool = tmp_path / "spool"
    store = PostgresStore(postgres_server, schema=schema, spool=spool, durable=True)
    tracker = Tracker(store=store)
    records = [tracker.record(USAGE, "gpt-4o", agent=f"a{i % 3}", at=T0) for i in range(40)]
    store._spool.append(store._payload(records[:25]))
    store._spool.append(store._payload(records))
    store.flush()
    assert store.stats()["replayed_batches"] == 2
    totals = tracker.totals()
    assert (totals.calls, totals.input_tokens) == (40, 40 * USAGE.input_tokens)
    assert count_rows(postgres_server, schema) == (40, 40)
    store.close()


def test_spool_left_by_a_dead_process_is_adopted_by_the_next_store(
    postgres_server: str, schema: str, tmp_path: Path, relay: Relay
) -> None:
    spool = tmp_path / "spool"
    code = f"""
import tokentrail as tt
from tokentrail.stores.postgres import PostgresStore
from tokentrail.tracker import Tracker
store = PostgresStore({relay.url(postgres_server)!r}, schema={schema!r}, spool={str(spool)!r}, durable=True)
tracker = Tracker(store=store)
tracker.record(tt.Usage(input_tokens=5, output_tokens=1), "gpt-4o", agent="survivor")
import os
print("recorded", flush=True)
input()
tracker.record(tt.Usage(input_tokens=5, output_tokens=1), "gpt-4o", agent="spooled")
os._exit(0)  # no close, no atexit: the spool file is all that is left
"""
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "recorded"
    relay.cut()
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.wait(60) == 0
    assert len(list(spool.glob("*.jsonl"))) == 1
    relay.restore()  # the spool belongs to the ledger as its URL names it (host and port included)
    with PostgresStore(relay.url(postgres_server), schema=schema, spool=spool) as store:
        agents = {row.group["agent"]: row.calls for row in Tracker(store=store).summary("agent")}
        assert agents == {"survivor": 1, "spooled": 1}
    assert list(spool.glob("*.jsonl")) == []


def test_durable_append_is_committed_before_it_returns(store: PostgresStore, postgres_server: str) -> None:
    durable = PostgresStore(postgres_server, schema=store.schema, durable=True, spool=store._spool.directory)
    Tracker(store=durable).record(USAGE, "gpt-4o")
    assert count_rows(postgres_server, store.schema) == (1, 1)  # another connection sees it already
    durable.close()


def _stop_start_writer(url: str, schema: str, spool: str, count: int, ready: object, spooled: object) -> None:
    store = PostgresStore(url, schema=schema, batch_size=100, flush_interval=0.05, spool=spool, timeout=2)
    tracker = Tracker(store=store)
    for i in range(count):
        tracker.record(USAGE, "gpt-4o", agent="steady", session=str(i % 5))
        if i == count // 4:
            ready.set()  # type: ignore[attr-defined]
        time.sleep(0.001)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the server, then let close() replay the spool
        if postgres_up(url):
            break
        time.sleep(0.2)
    store.close()
    spooled.put(store._spool.spooled)  # type: ignore[attr-defined]
    sys.exit(0 if tracker.sink_errors == 0 else 3)


def test_postgres_stopped_mid_run_loses_and_doubles_nothing(
    postgres_server: str, schema: str, tmp_path: Path
) -> None:
    cluster = postgres_cluster()
    if cluster is None:
        skip_or_fail(
            "POSTGRES (stop/start)",
            "no local cluster to stop and start (pg_ctlcluster not on PATH or /etc/postgresql empty)",
            "apt-get install -y postgresql (Debian's cluster tools)",
        )
    PostgresStore(postgres_server, schema=schema, spool=tmp_path).close()
    context = multiprocessing.get_context("spawn")
    count = 3000
    ready, spooled = context.Event(), context.Queue()
    workers = [
        context.Process(
            target=_stop_start_writer, args=(postgres_server, schema, str(tmp_path), count, ready, spooled)
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        assert ready.wait(60)
        stopped = subprocess.run([*cluster, "stop", "-m", "fast"], capture_output=True, text=True)
        assert stopped.returncode == 0, stopped.stderr
        time.sleep(1.5)  # the writers keep recording: their batches go to the spool
    finally:
        subprocess.run([*cluster, "start"], capture_output=True)
        assert start_postgres()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert spooled.get(timeout=5) + spooled.get(timeout=5) > 0  # the outage really sent batches to the spool
    assert count_rows(postgres_server, schema) == (2 * count, 2 * count)
    with PostgresStore(postgres_server, schema=schema, spool=tmp_path) as store:
        totals = Tracker(store=store).totals()
        assert totals.calls == 2 * count
        assert totals.cost_units == 2 * count * tt.price(USAGE, "gpt-4o").total_units  # type: ignore[attr-defined]
    assert list(tmp_path.glob("*.jsonl")) == []


# -- hostile values -----------------------------------------------------------------------------------------

HOSTILE = [
    "x'; DROP TABLE records;--",
    'robert"); DROP SCHEMA public CASCADE;--',
    "nul\x00inside",
    "\x00",
    "trailing backslash \\",
    "\\0 looks escaped",
    "\ufdd0starts with the escape mark",
    "\ufdd0",
    "emoji 🤖🔥 and ünïcödé",
    "lone surrogate \ud800 here",
    "y" * 10_000,
    "",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_text_escape_round_trips(value: str) -> None:
    stored = encode_text(value)
    assert stored is not None and "\x00" not in stored
    stored.encode("utf-8")  # Postgres can hold it
    assert decode_text(stored) == value


def test_escape_changes_only_what_postgres_cannot_hold() -> None:
    assert encode_text("plain agent") == "plain agent"
    assert encode_text("emoji 🤖 back\\slash") == "emoji 🤖 back\\slash"
    assert encode_text(None) is None


def test_hostile_values_are_stored_and_reported_verbatim(store: PostgresStore, postgres_server: str) -> None:
    tracker = Tracker(store=store)
    for value in HOSTILE:
        tracker.record(
            USAGE,
            value or "m",
            agent=value,
            session=value,
            user=value,
            tool=value,
            tags=[value, "plain"],
            at=T0,
            context={"note": value},
        )
    by_agent = {row.group["agent"]: row.calls for row in tracker.summary("agent")}
    assert by_agent == dict.fromkeys(HOSTILE, 1)
    assert {row.group["tag"] for row in tracker.summary("tag")} == {*HOSTILE, "plain"}
    for value in HOSTILE:
        assert tracker.totals(agent=value).calls == 1
        assert tracker.totals(tag=value).calls == 1
        assert tracker.totals(agent=value, since=T0 + timedelta(minutes=1)).calls == 0
        (record,) = tracker.history(user=value)
        assert (record.agent, record.session, record.tool, record.tags) == (
            value,
            value,
            value,
            tuple(sorted({value, "plain"})),
        )
        assert record.context == {"note": value}
        assert record.model == (value or "m")
    with psycopg.connect(postgres_server) as conn:  # the tables are all still there
        row = conn.execute(f'SELECT count(*) FROM "{store.schema}".records').fetchone()
        assert row is not None and row[0] == len(HOSTILE)
    assert tracker.reset(agent=HOSTILE[0]) == 1
    assert tracker.totals().calls == len(HOSTILE) - 1


def test_hierarchy_paths_with_hostile_nodes(store: PostgresStore) -> None:
    root = Tracker(store=store)
    team = root.child("a\x00b").child("🤖")
    team.record(USAGE, "gpt-4o")
    root.child("a\x00b").record(USAGE, "gpt-4o")
    assert root.child("a\x00b").totals().calls == 2
    assert root.child("a\x00b").totals(include_children=False).calls == 1
    assert {row.group["path"] for row in root.summary("path")} == {"a\x00b/🤖", "a\x00b"}


# -- partitions ---------------------------------------------------------------------------------------------


def test_partitions_are_created_for_each_month_the_records_span(
    store: PostgresStore, postgres_server: str
) -> None:
    tracker = Tracker(store=store)
    months = [datetime(2024, 11, 30, 23, 59, tzinfo=timezone.utc), datetime(2024, 12, 1, tzinfo=timezone.utc)]
    months += [datetime(2025, m, 15, tzinfo=timezone.utc) for m in (1, 3)]
    for at in months:
        tracker.record(USAGE, "gpt-4o", at=at)
    assert tracker.totals().calls == 4
    with psycopg.connect(postgres_server) as conn:
        found = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent"
            " JOIN pg_namespace n ON n.oid = p.relnamespace WHERE n.nspname = %s AND p.relname = 'records'"
            " ORDER BY 1",
            (store.schema,),
        ).fetchall()
        per_partition = conn.execute(
            f'SELECT tableoid::regclass::text, count(*) FROM "{store.schema}".records GROUP BY 1 ORDER BY 1'
        ).fetchall()
    assert [name for name, _ in found] == [
        "records_2024_11",
        "records_2024_12",
        "records_2025_01",
        "records_2025_03",
    ]
    low = to_timestamp_us(datetime(2024, 12, 1, tzinfo=timezone.utc))
    assert str(low) in found[0][1] and str(low) in found[1][1]
    assert [count for _, count in per_partition] == [1, 1, 1, 1]
    assert store.stats()["partitions"] == 4


def test_prune_drops_whole_month_partitions(store: PostgresStore, postgres_server: str) -> None:
    tracker = Tracker(store=store)
    for day in (1, 20):
        tracker.record(USAGE, "gpt-4o", at=datetime(2025, 1, day, tzinfo=timezone.utc))
    tracker.record(USAGE, "gpt-4o", at=datetime(2025, 2, 3, tzinfo=timezone.utc))
    tracker.record(USAGE, "gpt-4o", at=datetime(2025, 2, 20, tzinfo=timezone.utc))
    assert store.prune(to_timestamp_us(datetime(2025, 2, 10, tzinfo=timezone.utc))) == 3
    assert store.stats()["partitions"] == 1
    assert [r.timestamp.day for r in tracker.history()] == [20]
    assert tracker.totals().calls == 4  # the rollups still count the pruned records
    tracker.record(USAGE, "gpt-4o", at=datetime(2025, 1, 5, tzinfo=timezone.utc))  # late: partition again
    assert tracker.totals(until=datetime(2025, 2, 1, tzinfo=timezone.utc)).calls == 3


# -- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:notaport/test",
        "mysql://root@127.0.0.1/test",
        "postgresql://postgres@127.0.0.1:5432/test?schema=bad-name;drop",
        "postgresql://postgres@127.0.0.1:5432/test?batch_size=many",
        "postgresql://postgres@127.0.0.1:5432/test?no_such_libpq_option=1",
    ],
)
def test_bad_url_is_a_clear_store_error(postgres_server: str, url: str) -> None:
    with pytest.raises(StoreError):
        open_postgres_url(url)


def test_unreachable_server_at_open_is_a_store_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot reach Postgres store"):
        PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/test", spool=tmp_path, timeout=2)
    assert time.monotonic() - started < 10


def test_newer_schema_version_is_refused(store: PostgresStore, postgres_server: str) -> None:
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{store.schema}".schema_migrations (version) VALUES (%s)', (SCHEMA_VERSION + 1,)
        )
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        PostgresStore(postgres_server, schema=store.schema)


def test_foreign_schema_with_a_records_table_is_refused(postgres_server: str, schema: str) -> None:
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".records (x int)')
    with pytest.raises(StoreError, match="not a tokentrail ledger"):
        PostgresStore(postgres_server, schema=schema)


def test_schema_is_versioned_and_reopening_keeps_the_records(
    store: PostgresStore, postgres_server: str, tmp_path: Path
) -> None:
    Tracker(store=store).record(USAGE, "gpt-4o", agent="kept")
    store.close()
    with psycopg.connect(postgres_server) as conn:
        versions = conn.execute(f'SELECT version FROM "{store.schema}".schema_migrations').fetchall()
    assert versions == [(version,) for version in range(1, SCHEMA_VERSION + 1)]
    with PostgresStore(postgres_server, schema=store.schema, spool=tmp_path) as again:
        assert Tracker(store=again).totals(agent="kept").calls == 1


def test_tracker_opens_a_postgres_url_with_options(postgres_server: str, schema: str, tmp_path: Path) -> None:
    url = f"{postgres_server}?schema={schema}&durable=1&pool_size=2&spool={tmp_path / 'sp'}"
    tracker = Tracker(store=url)
    store = tracker.store
    assert isinstance(store, PostgresStore) and store.durable and store.schema == schema
    tracker.record(USAGE, "gpt-4o")
    assert count_rows(postgres_server, schema) == (1, 1)
    assert store.summary(Query(), ("model",))[0].calls == 1
    store.close()


def test_unknown_price_version_is_refused(store: PostgresStore) -> None:
    with pytest.raises(ValueError, match="no price version"):
        Tracker(store=store).totals(prices="v2")


def test_a_batch_payload_is_json_with_each_record_once(store: PostgresStore) -> None:
    record = Tracker().record(USAGE, "gpt-4o", agent="a\x00b", provider_cost="0.0010")
    payload = store._payload([record, record])
    assert json.loads(json.dumps(payload)) == payload  # the spool can hold it exactly
    assert len(payload["rows"]) == 1
    store._spool.append(payload)
    store.flush()
    (back,) = Tracker(store=store).history()
    assert back == record


def test_reading_during_an_outage_is_a_store_error_and_recording_is_not(
    postgres_server: str, schema: str, tmp_path: Path, relay: Relay
) -> None:
    store = PostgresStore(relay.url(postgres_server), schema=schema, spool=tmp_path, timeout=1)
    tracker = Tracker(store=store)
    relay.cut()
    tracker.record(USAGE, "gpt-4o")
    assert tracker.sink_errors == 0
    with pytest.raises(StoreError, match="cannot read Postgres store"):
        store.summary(Query(), ())
    relay.restore()
    assert wait_for(lambda: store.stats()["records"] == 1, 20)
    store.close()
    assert os.listdir(tmp_path) == []


# -- price versions -------------------------------------------------------------------------------------------

FLAT = 7 * 10**21


def _flat(record: Record) -> Cost:
    return Cost(priced=True, parts=(FLAT,))


def _rows_with_xmin(url: str, schema: str) -> list[tuple[str, ...]]:
    """Every row of the version tables with the transaction that last wrote it."""
    with psycopg.connect(url) as conn:
        costs = conn.execute(f'SELECT xmin::text, id::text FROM "{schema}".costs ORDER BY id').fetchall()
        cells = conn.execute(
            f'SELECT xmin::text, cell::text, priced::text FROM "{schema}".rollup_prices ORDER BY cell, priced'
        ).fetchall()
    return [*costs, *cells]


def test_a_v1_ledger_is_migrated_and_can_be_repriced(
    postgres_server: str, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokentrail.stores import postgres

    with monkeypatch.context() as patch:
        patch.setattr(postgres, "SCHEMA_VERSION", 1)
        PostgresStore(postgres_server, schema=schema, spool=tmp_path).close()  # the v1 schema, empty
    _copy_as_v1(
        postgres_server, schema, tmp_path, USAGE, "gpt-4o", agent="before", estimated_input_tokens=1200
    )
    with monkeypatch.context():
        with psycopg.connect(postgres_server) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
                )
            }
        assert "costs" not in tables
    with PostgresStore(postgres_server, schema=schema, spool=tmp_path) as store:
        tracker = Tracker(store=store)
        assert store.reprice(Query(), _flat, "flat") == 1
        assert tracker.totals(prices="flat").cost_units == FLAT
        assert tracker.totals().cost_units == tt.price(USAGE, "gpt-4o").total_units
    with psycopg.connect(postgres_server) as conn:
        versions = conn.execute(f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1').fetchall()
        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = 'records_estimated'",
            (schema,),
        ).fetchone()
    assert versions == [(1,), (2,), (3,), (4,), (5,), (6,)]
    assert index is not None and "est_input IS NOT NULL" in index[0]


def _copy_as_v1(
    url: str, schema: str, tmp_path: Path, usage: tt.Usage, model: str, **attributes: Any
) -> None:
    """Add one record to the empty v1 ledger `schema` as the v1 store wrote it: recorded by today's store
    in a scratch schema, then its v1 columns (raw row, rollup cell, price rule) copied over."""
    from tokentrail.stores.postgres import _month, _month_start_us, _partition_name

    scratch = schema_name()
    try:
        with PostgresStore(url, schema=scratch, spool=tmp_path / "scratch") as store:
            Tracker(store=store).record(usage, model, **attributes)
        with psycopg.connect(url, autocommit=True) as conn:
            [(ts,)] = conn.execute(f'SELECT ts FROM "{scratch}".records').fetchall()
            month = _month(ts)
            conn.execute(
                f'CREATE TABLE "{schema}".{_partition_name(month)} PARTITION OF "{schema}".records'
                f" FOR VALUES FROM ({_month_start_us(month)}) TO ({_month_start_us(month + 1)})"
            )
            for table in ("records", "rollup_hour", "rules"):
                columns = ", ".join(f'"{row[0]}"' for row in _columns(conn, schema, table))
                conn.execute(
                    f'INSERT INTO "{schema}".{table} ({columns}) SELECT {columns} FROM "{scratch}".{table}'
                )
    finally:
        drop(url, scratch)


def test_reprice_in_batches_and_again_writes_nothing(
    store: PostgresStore, postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokentrail.stores import postgres

    monkeypatch.setattr(postgres, "_REPRICE_BATCH", 7)  # 50 records: 8 batches
    tracker = Tracker(store=store)
    for i in range(50):
        tracker.record(
            USAGE, "gpt-4o" if i % 5 else "acme-private", agent=f"a{i % 3}", at=T0 + timedelta(minutes=i)
        )
    assert store.reprice(Query(), _flat, "flat") == 50
    assert tracker.totals(prices="flat").cost_units == 50 * FLAT
    assert tracker.totals(prices="flat").unpriced_calls == 0
    written = _rows_with_xmin(postgres_server, store.schema)
    # a cost per record; per agent, the gpt-4o cell's cost moved, the acme one's call moved to priced
    assert len(written) == 50 + 3 * (1 + 2)
    assert store.reprice(Query(), _flat, "flat") == 50
    assert _rows_with_xmin(postgres_server, store.schema) == written  # not one row rewritten
    assert store.price_versions() == ["flat"]


def test_reprice_while_other_processes_append(postgres_server: str, schema: str, tmp_path: Path) -> None:
    PostgresStore(postgres_server, schema=schema, spool=tmp_path).close()
    store = PostgresStore(postgres_server, schema=schema, spool=tmp_path)
    tracker = Tracker(store=store)
    for i in range(2000):
        tracker.record(USAGE, "gpt-4o", agent="early", at=T0 + timedelta(seconds=i))
    stop = threading.Event()
    appended: list[int] = []

    def append() -> None:
        with PostgresStore(postgres_server, schema=schema, spool=tmp_path, batch_size=50) as writer:
            writing = Tracker(store=writer)
            while not stop.is_set() and len(appended) < 3000:
                writing.record(USAGE, "gpt-4o", agent="late", at=T0 + timedelta(minutes=30))
                appended.append(1)
                time.sleep(0.0005)

    threads = [threading.Thread(target=append) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        repriced = store.reprice(Query(), _flat, "flat")
        repriced += store.reprice(Query(), _flat, "flat")  # the late ones committed meanwhile, too
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    totals, version = tracker.totals(), tracker.totals(prices="flat")
    assert totals.calls == 2000 + len(appended) == version.calls
    assert repriced >= 2000 + 2000  # the early records both times
    history = tracker.history(prices="flat")
    assert version.cost_units == sum(r.cost_units or 0 for r in history)  # rollups agree with raw rows
    still_recorded = sum(1 for r in history if r.cost_units != FLAT)
    assert (
        version.cost_units
        == (totals.calls - still_recorded) * FLAT + still_recorded * tt.price(USAGE, "gpt-4o").total_units
    )
    store.close()


@pytest.mark.parametrize("label", ["x'; DROP TABLE costs;--", "v\udc80", "🚀 q3"])
def test_hostile_version_names_round_trip(store: PostgresStore, label: str) -> None:
    tracker = Tracker(store=store)
    tracker.record(USAGE, "gpt-4o", at=T0)
    assert store.reprice(Query(), _flat, label) == 1
    assert store.price_versions() == [label]
    assert tracker.totals(prices=label).cost_units == FLAT
    assert [r.cost_units for r in tracker.history(prices=label)] == [FLAT]


def test_cli_reprice_and_report_on_postgres(postgres_server: str, schema: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tokentrail.cli import app

    url = f"{postgres_server}?schema={schema}&spool={tmp_path / 'spool'}"
    with PostgresStore(postgres_server, schema=schema, spool=tmp_path / "spool") as store:
        tracker = Tracker(store=store)
        tracker.record(USAGE, "gpt-4o", agent="a", at=T0)
        tracker.record(USAGE, "acme-private", agent="b", at=T0)
    prices = tmp_path / "prices.toml"
    prices.write_text('[[price]]\nmodel = "acme-private"\ninput = "1"\noutput = "2"\n')
    runner = CliRunner()
    result = runner.invoke(
        app, ["reprice", "--store", url, "--since", "2025-06-01", "--prices", str(prices), "--label", "q3"]
    )
    assert result.exit_code == 0, result.output
    assert "records costed differently: 1" in result.output
    report = runner.invoke(
        app, ["report", "--store", url, "--by", "agent", "--format", "json", "--prices", "q3"]
    )
    assert report.exit_code == 0, report.output
    data = json.loads(report.output)
    assert data["prices"] == "q3"
    gpt = tt.price(USAGE, "gpt-4o").total
    assert Decimal(data["totals"]["cost"]) == gpt + Decimal("0.002368")  # acme: 1234 x 1/M + 567 x 2/M
    missing = runner.invoke(app, ["report", "--store", url, "--prices", "nope"])
    assert missing.exit_code == 1 and "no price version 'nope'" in missing.output


def test_estimated_records_are_read_through_the_partial_index(
    store: PostgresStore, postgres_server: str
) -> None:
    from tokentrail.stores.postgres import _where

    tracker = Tracker(store=store)
    for i in range(2000):
        estimate = 900 if i % 100 == 0 else None
        tracker.record(USAGE, "gpt-4o", at=T0 + timedelta(seconds=30 * i), estimated_input_tokens=estimate)
    assert len(tracker.history(estimated=True)) == 20
    where, params = _where(Query.build({"estimated": True, "status": "complete"}), raw=True)
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'ANALYZE "{store.schema}".records')
        partial = {
            row[0]
            for row in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexdef LIKE %s",
                (store.schema, "%WHERE (est_input IS NOT NULL)"),
            )
        }
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f'EXPLAIN SELECT * FROM "{store.schema}".records WHERE {" AND ".join(where)} ORDER BY ts, id',
                params,
            )
        )
    assert "records_2025_06" in {name.rsplit("_ts_idx", 1)[0] for name in partial}
    assert any(re.search(rf"\b{name}\b", plan) for name in partial), plan  # index or bitmap scan


def test_concurrent_reprices_of_one_version_take_turns(
    postgres_server: str, schema: str, tmp_path: Path
) -> None:
    with PostgresStore(postgres_server, schema=schema, spool=tmp_path) as store:
        tracker = Tracker(store=store)
        for i in range(3000):
            tracker.record(USAGE, "gpt-4o", agent=f"a{i % 5}", at=T0 + timedelta(seconds=7 * i))
    stores = [PostgresStore(postgres_server, schema=schema, spool=tmp_path) for _ in range(2)]
    units = [FLAT, 3 * FLAT]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def reprice(store: PostgresStore, cost: int) -> None:
        try:
            start.wait()
            assert store.reprice(Query(), lambda record: Cost(priced=True, parts=(cost,)), "v") == 3000
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reprice, args=pair) for pair in zip(stores, units, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    tracker = Tracker(store=stores[0])
    costs = {r.cost_units for r in tracker.history(prices="v")}
    assert len(costs) == 1 and costs <= set(units)  # one of them, wholly, the other replaced
    (cost,) = costs
    assert tracker.totals(prices="v").cost_units == 3000 * cost
    assert {row.cost_units for row in tracker.summary("agent", prices="v")} == {600 * cost}
    for store in stores:
        store.close()


# -- schema v3: every unit a Usage carries --------------------------------------------------------------

_V3_TABLES = ("records", "rollup_hour", "rollup_prices")


def _columns(conn: Any, schema: str, table: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = conn.execute(
        "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()
    return rows


def _rows(conn: Any, schema: str, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    picked = ", ".join(f'"{c}"' for c in columns)
    return sorted(conn.execute(f'SELECT {picked} FROM "{schema}".{table}').fetchall(), key=repr)


def test_a_v2_ledger_gains_every_unit_and_keeps_its_values(
    postgres_server: str, schema: str, tmp_path: Path
) -> None:
    """A ledger at schema v2 (records over two months, a price version) migrates to v3: every value of
    every table is kept, the new counts read 0, and a record carrying every unit then round-trips through
    history, summaries, rollups and a reprice."""
    from tests.stores.every_unit import EVERY_UNIT, NEW_COUNTS
    from tests.stores.fixtures.make_ledger_v4 import answers
    from tokentrail.stores.postgres import _TOKEN_FIELDS_V1, _TOKEN_FIELDS_V3, _schema_v1, _schema_v2

    assert tt.Usage.__dataclass_fields__.keys() >= set(_TOKEN_FIELDS_V3)
    old_kinds = tt.Usage(
        input_tokens=5000,
        output_tokens=900,
        cache_read_tokens=1000,
        cache_write_tokens=700,
        cache_write_1h_tokens=300,
        reasoning_tokens=100,
        input_audio_tokens=50,
        cache_audio_read_tokens=10,
        output_audio_tokens=20,
        input_image_tokens=60,
        cache_image_read_tokens=5,
        output_image_tokens=7,
        input_video_tokens=8,
        output_video_tokens=9,
        web_searches=2,
        requests=3,
    )
    with PostgresStore(postgres_server, schema=schema, spool=tmp_path) as store:
        tracker = Tracker(store=store)
        for i in range(24):
            tracker.record(
                old_kinds if i % 3 == 0 else USAGE,
                "gpt-4o" if i % 2 else "claude-sonnet-4-5",
                agent=f"a{i % 4}",
                tags=["t"] if i % 5 else [],
                at=T0 + timedelta(days=2 * i, minutes=i),  # June and July: two partitions
                duration_ms=100.0 + i if i % 2 else None,
                provider_cost=Decimal("0.0123") if i == 3 else None,
                estimated_input_tokens=1000 if i == 4 else None,
            )
        store.flush()
        assert store.reprice(Query.build({"agent": "a1"}, None, None), _flat, "v2") == 6
        expected = answers(store)
    for key in ("history", "history_v2"):
        for record in expected[key]:
            assert {record["usage"].pop(name) for name in NEW_COUNTS} == {0}
    # Back to the v2 layout: the v3 columns dropped, the version forgotten.
    dropped = ", ".join(f'DROP COLUMN "t_{name}"' for name in NEW_COUNTS)
    frozen = schema_name()
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        for table in _V3_TABLES:
            conn.execute(f'ALTER TABLE "{schema}".{table} {dropped}')
        conn.execute(f'DELETE FROM "{schema}".schema_migrations WHERE version >= 3')
        for table in ("records", "costs", "rollup_hour", "rollup_prices"):  # and v5's non-token amounts
            conn.execute(f'ALTER TABLE "{schema}".{table} DROP COLUMN non_token')
        conn.execute(f'DROP TABLE "{schema}".sessions')  # and v4's per-session rollup
        conn.execute(f'DROP INDEX "{schema}".records_session')
        try:  # ... which is exactly what the frozen v1 and v2 statements make
            conn.execute(f'CREATE SCHEMA "{frozen}"')
            for statement in [*_schema_v1(f'"{frozen}"'), *_schema_v2(f'"{frozen}"')]:
                conn.execute(statement)
            for table in _V3_TABLES:
                assert _columns(conn, schema, table) == _columns(conn, frozen, table), table
        finally:
            conn.execute(f'DROP SCHEMA IF EXISTS "{frozen}" CASCADE')
        old_columns = {table: [row[0] for row in _columns(conn, schema, table)] for table in _V3_TABLES}
        before = {table: _rows(conn, schema, table, old_columns[table]) for table in _V3_TABLES}
        before["costs"] = _rows(conn, schema, "costs", ["version", "id", "ts", "priced", "cost", "rule"])
        assert len(before["records"]) == 24 and len(before["rollup_prices"]) > 0
        assert {f"t_{name}" for name in _TOKEN_FIELDS_V1} <= set(old_columns["rollup_hour"])

    with PostgresStore(postgres_server, schema=schema, spool=tmp_path) as store:
        got = answers(store)
        # v5 fills the non-token amounts of the web-search calls (updated rows): the server's size moves
        got["stats"].pop("server_bytes"), expected["stats"].pop("server_bytes")
        for key in ("history", "history_v2"):
            for record in got[key]:
                assert {record["usage"].pop(name) for name in NEW_COUNTS} == {0}
        assert got == expected
        with psycopg.connect(postgres_server) as conn:
            versions = conn.execute(f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1').fetchall()
            assert versions == [(1,), (2,), (3,), (4,), (5,), (6,)]
            for table in _V3_TABLES:
                assert _rows(conn, schema, table, old_columns[table]) == before[table], table
                new = ", ".join(f'coalesce(sum("t_{name}"), 0)' for name in NEW_COUNTS)
                assert set(conn.execute(f'SELECT {new} FROM "{schema}".{table}').fetchone()) == {0}
            costs = _rows(conn, schema, "costs", ["version", "id", "ts", "priced", "cost", "rule"])
            assert costs == before["costs"]

        tracker = Tracker(store=store)
        at = T0 + timedelta(days=3, hours=5)
        calls = tracker.totals().calls
        tracker.record(EVERY_UNIT, "gpt-4o", agent="every-unit", at=at)
        store.flush()
        [record] = store.history(Query.build({"agent": "every-unit"}, None, None))
        assert record.usage == EVERY_UNIT
        assert record.cost_units == tt.price(EVERY_UNIT, "gpt-4o", at=at).total_units
        assert tracker.totals().calls == calls + 1
        [row] = tracker.summary("agent", agent="every-unit")
        assert row.usage == EVERY_UNIT
        unpriced = lambda record: Cost.unpriced("no price in this version")  # noqa: E731
        assert store.reprice(Query.build({"agent": "every-unit"}, None, None), unpriced, "none") == 1
        [repriced] = tracker.summary("agent", agent="every-unit", prices="none")
        assert (repriced.usage, repriced.unpriced_calls, repriced.cost_units) == (EVERY_UNIT, 1, 0)
        with psycopg.connect(postgres_server) as conn:
            picked = ", ".join(f'sum("t_{name}")' for name in NEW_COUNTS)
            wanted = tuple(getattr(EVERY_UNIT, name) for name in NEW_COUNTS)
            for table in ("records", "rollup_hour"):
                sums = conn.execute(f"SELECT {picked} FROM \"{schema}\".{table} WHERE agent = 'every-unit'")
                assert sums.fetchone() == wanted, table
            for priced, sign in ((False, 1), (True, -1)):  # the counts moved from the priced cell
                moved = conn.execute(
                    f'SELECT {picked} FROM "{schema}".rollup_prices'
                    " WHERE agent = 'every-unit' AND version = 'none' AND priced = %s",
                    (priced,),
                ).fetchone()
                assert moved == tuple(sign * count for count in wanted), priced


def test_every_unit_has_a_column_in_the_current_postgres_schema() -> None:
    from tokentrail._types import TOKEN_FIELDS
    from tokentrail.stores.postgres import _TOKEN_FIELDS_V3

    assert TOKEN_FIELDS == _TOKEN_FIELDS_V3


def test_a_batch_spooled_before_v3_is_replayed_with_the_new_counts_zero(
    postgres_server: str, schema: str, tmp_path: Path
) -> None:
    """A spooled batch from a store before schema v3 holds rows without the v3 counts: it is written
    with those counts 0, not refused."""
    from tests.stores.every_unit import NEW_COUNTS
    from tokentrail.stores.postgres import _RECORD_COLUMNS

    record = Tracker().record(USAGE, "gpt-4o", agent="old-spool", at=T0)
    with PostgresStore(postgres_server, schema=schema, spool=tmp_path) as store:
        payload = store._payload([record])
        dropped = {_RECORD_COLUMNS.index(f"t_{name}") for name in NEW_COUNTS}
        dropped.add(_RECORD_COLUMNS.index("non_token"))  # added in v5, after v3
        payload["rows"] = [[v for i, v in enumerate(row) if i not in dropped] for row in payload["rows"]]
        store._spool.append(payload)
        store.flush()
        assert store.rejected == 0
        [got] = store.history(Query.build({"agent": "old-spool"}, None, None))
    assert (got.id, got.usage, got.cost_units) == (record.id, USAGE, record.cost_units)
