"""SQLite ledger: write throughput against raw executemany ceilings, and the agent × model report over a
large ledger against plain GROUP BYs in SQLite and DuckDB, all in the same run.

python benchmarks/bench_store.py [--records 10000000] [--writes 200000] [--rounds 3]   (--records 0: writes only)

Writes go through the real path: `tracker.record()` → `SQLiteStore` → committed to the file (WAL).
DuckDB (extra `bench`: duckdb==2.0.1) is optional: without it its line is skipped.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import tokentrail as tt
from tokentrail._record import Record, to_timestamp_us
from tokentrail.stores.base import Query
from tokentrail.stores.sqlite import (
    _INSERT_RECORD,
    _TOKEN_FIELDS_V1,
    SQLiteStore,
    _insert_columns,
    _insert_rows,
    _record_columns,
    _schema_v1,
    _schema_v2,
    _schema_v3,
)
from tokentrail.tracker import Tracker

AGENTS = [f"agent-{i}" for i in range(20)]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "o3"]
USAGES = [tt.Usage(input_tokens=100 + i, output_tokens=20 + i % 50) for i in range(64)]
START = datetime(2025, 6, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=30)
WRITE_SPAN = timedelta(hours=1)
BATCH = 10_000
V4_COLUMNS = _record_columns(_TOKEN_FIELDS_V1)  # the wide rows of schema v4, the counts it had
QUOTED_COLUMNS = ", ".join(f'"{c}"' for c in V4_COLUMNS)
CEILING = "raw executemany, same rows and schema, rows/s"
MULTI_CEILING = "raw multi-row INSERTs (50 rows each), same rows, rows/s"
SHAPED_CEILING = "raw multi-row INSERTs shaped as the store's, rows/s"
# the same figures by the process's CPU time: what the work costs, whatever else runs on the machine
CPU_STORE = "… store alone, by CPU time (both threads), records/s"
CPU_CEILING = "… raw executemany, by CPU time, rows/s"
CPU_MULTI_CEILING = "… raw multi-row INSERTs, by CPU time, rows/s"
CPU_SHAPED_CEILING = "… raw shaped multi-row INSERTs, by CPU time, rows/s"
CEILINGS = (CEILING, MULTI_CEILING, SHAPED_CEILING)
CPU_CEILINGS = (CPU_CEILING, CPU_MULTI_CEILING, CPU_SHAPED_CEILING)


def calls(count: int, span: timedelta = SPAN) -> Iterator[tuple[tt.Usage, str, str, datetime]]:
    """`count` calls over 20 agents × 5 models (every pair) spread evenly over `span` from START."""
    step = span / max(count, 1)
    for i in range(count):
        yield USAGES[i % 64], MODELS[(i // 20) % 5], AGENTS[i % 20], START + i * step


class _NoStore:
    """A store that keeps nothing: measures `tracker.record()` itself."""

    def append(self, record: Record) -> None:
        pass

    def summary(self, query: Query, by: tuple[str, ...]) -> list[Any]:
        return []

    def history(self, query: Query, limit: int | None = None) -> list[Record]:
        return []

    def reset(self, query: Query) -> int:
        return 0


def record_into(
    tracker: Tracker, count: int, flush: Callable[[], None], span: timedelta = SPAN, every: int = 200_000
) -> float:
    """Seconds to record `count` calls and commit them (flushing every `every` to bound the queue)."""
    started = time.perf_counter()
    for i, (usage, model, agent, at) in enumerate(calls(count, span), 1):
        tracker.record(usage, model, agent=agent, at=at)
        if i % every == 0:
            flush()
    flush()
    return time.perf_counter() - started


def write_figures(count: int, folder: Path, rounds: int) -> dict[str, float]:
    """Writes of `count` calls made within one hour (a busy burst: a batch touches few rollup cells).

    The store runs and the raw `executemany` ceilings are interleaved, `rounds` times, in fresh files;
    each figure is the best of its rounds (other work on the machine only ever slows a run down)."""
    source = Tracker()
    for usage, model, agent, at in calls(count, WRITE_SPAN):
        source.record(usage, model, agent=agent, at=at)
    records = source.history()
    runs: dict[str, list[float]] = {}
    for round_ in range(rounds):
        for name, value in _write_round(records, folder / f"round{round_}").items():
            runs.setdefault(name, []).append(value)
    return {name: max(values) for name, values in runs.items()}


def _write_round(records: list[Record], folder: Path) -> dict[str, float]:
    folder.mkdir()
    count = len(records)
    figures: dict[str, float] = {}
    store = SQLiteStore(folder / "writes.db", batch_size=BATCH, flush_interval=60)
    seconds = record_into(Tracker(store=store), count, store.flush, WRITE_SPAN)
    store.close()
    figures["tracker.record → SQLiteStore → committed, records/s"] = count / seconds

    seconds = record_into(Tracker(store=_NoStore()), count, lambda: None, WRITE_SPAN)  # type: ignore[arg-type]
    figures["tracker.record alone (no store), records/s"] = count / seconds

    store = SQLiteStore(folder / "append.db", batch_size=BATCH, flush_interval=60)
    started, cpu = time.perf_counter(), time.process_time()
    for record in records:
        store.append(record)
    store.flush()
    figures["SQLiteStore.append + flush (store alone), records/s"] = count / (time.perf_counter() - started)
    figures[CPU_STORE] = count / (time.process_time() - cpu)
    rows = store._rows(records)
    store.close()

    same = SQLiteStore(folder / "ceiling.db")  # the same schema, then raw executemany of the same rows
    same.close()
    raw = sqlite3.connect(folder / "ceiling.db", isolation_level=None)
    raw.execute("PRAGMA synchronous = NORMAL")
    cpu = time.process_time()
    figures[CEILING] = count / _executemany(raw, _INSERT_RECORD, rows)
    figures[CPU_CEILING] = count / (time.process_time() - cpu)
    _check_rows(raw, "ledger", count)
    raw.close()

    same = SQLiteStore(folder / "multi.db")  # the same again, by the store's multi-row INSERTs, raw
    same.close()
    raw = sqlite3.connect(folder / "multi.db", isolation_level=None)
    raw.execute("PRAGMA synchronous = NORMAL")
    cpu = time.process_time()
    figures[MULTI_CEILING] = count / _batches(raw, lambda batch: _insert_rows(raw, batch), rows)
    figures[CPU_MULTI_CEILING] = count / (time.process_time() - cpu)
    _check_rows(raw, "ledger", count)
    raw.close()

    # the same again, by the statements the store writes with: a column NULL in every row of a batch as
    # the literal NULL, ids bound as bytearray (None and bytes parameters cost sqlite3 an adapter lookup
    # each); the columns are made before the clock starts, so this is SQLite and the binding alone
    same = SQLiteStore(folder / "shaped.db")
    same.close()
    raw = sqlite3.connect(folder / "shaped.db", isolation_level=None)
    raw.execute("PRAGMA synchronous = NORMAL")
    batches = [list(zip(*rows[start : start + BATCH], strict=True)) for start in range(0, count, BATCH)]
    cpu, started = time.process_time(), time.perf_counter()
    for columns in batches:
        raw.execute("BEGIN")
        _insert_columns(raw, columns)
        raw.execute("COMMIT")
    figures[SHAPED_CEILING] = count / (time.perf_counter() - started)
    figures[CPU_SHAPED_CEILING] = count / (time.process_time() - cpu)
    _check_rows(raw, "ledger", count)
    raw.close()

    # the same records as the wide rows of schema v4 (what the `records` view shows), into a v4 table
    shown = sqlite3.connect(folder / "append.db")
    _check_rows(shown, "ledger", count)
    wide_rows = shown.execute(f"SELECT {QUOTED_COLUMNS} FROM records").fetchall()
    shown.close()
    wide = sqlite3.connect(folder / "wide.db", isolation_level=None)
    wide.execute("PRAGMA journal_mode = WAL")
    wide.execute("PRAGMA synchronous = NORMAL")
    for statement in [*_schema_v1(), *_schema_v2(), *_schema_v3(), "DROP INDEX records_hour"]:
        wide.execute(statement)
    insert = f"INSERT OR IGNORE INTO records ({QUOTED_COLUMNS}) VALUES ({', '.join('?' * len(V4_COLUMNS))})"
    figures[f"raw executemany, v4 wide rows ({len(V4_COLUMNS)} columns), rows/s"] = count / _executemany(
        wide, insert, wide_rows
    )
    _check_rows(wide, "records", count)
    wide.close()

    narrow = sqlite3.connect(folder / "narrow.db", isolation_level=None)
    narrow.execute("PRAGMA journal_mode = WAL")
    narrow.execute("PRAGMA synchronous = NORMAL")
    narrow.execute("CREATE TABLE t (ts INTEGER, agent TEXT, input INTEGER, output INTEGER)")
    narrow_rows = [(r.timestamp_us, r.agent, r.usage.input_tokens, r.usage.output_tokens) for r in records]
    seconds = _executemany(narrow, "INSERT INTO t VALUES (?, ?, ?, ?)", narrow_rows)
    figures["raw executemany, 4-column rows, no key, rows/s"] = count / seconds
    _check_rows(narrow, "t", count)
    narrow.close()
    return figures


def _check_rows(conn: sqlite3.Connection, table: str, count: int) -> None:
    """Every row written (a figure is only worth something if nothing was skipped)."""
    found = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if found != count:
        raise SystemExit(f"{table}: {found:,} rows written, expected {count:,}")


def _executemany(conn: sqlite3.Connection, sql: str, rows: list[Any]) -> float:
    return _batches(conn, lambda batch: conn.executemany(sql, batch), rows)


def _batches(conn: sqlite3.Connection, insert: Callable[[list[Any]], object], rows: list[Any]) -> float:
    """Seconds to insert `rows` with `insert`, BATCH rows a transaction."""
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        insert(rows[start : start + BATCH])
        conn.execute("COMMIT")
    return time.perf_counter() - started


def best_ms(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


PLAIN = "SELECT agent, model, count(*), sum(t_input_tokens), sum(t_output_tokens) FROM {table} GROUP BY agent, model"


def report_figures(count: int, folder: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    path = folder / "big.db"
    store = SQLiteStore(path, batch_size=BATCH, flush_interval=60)
    tracker = Tracker(store=store)
    seconds = record_into(tracker, count, store.flush)
    figures[f"built {count:,} records through tracker.record, s"] = seconds
    by = ("agent", "model")
    figures["report agent×model, whole ledger (rollup), ms"] = best_ms(lambda: store.summary(Query(), by))
    middle = START + SPAN / 2
    window = Query(
        since_us=to_timestamp_us(middle - timedelta(days=7, minutes=17)),
        until_us=to_timestamp_us(middle + timedelta(minutes=29)),
    )
    figures["report agent×model, since/until cutting hours, ms"] = best_ms(lambda: store.summary(window, by))
    rows = store.summary(Query(), by)
    stats = store.stats()
    store.close()
    figures["rollup rows"] = stats["rollup_rows"]
    figures["file MB"] = stats["file_bytes"] / 1e6

    conn = sqlite3.connect(path)
    started = time.perf_counter()
    plain = {(a, m): (n, i, o) for a, m, n, i, o in conn.execute(PLAIN.format(table="records"))}
    figures[f"SQLite plain GROUP BY over {count:,} raw rows (once), ms"] = (
        time.perf_counter() - started
    ) * 1000
    ours = {(r.group["agent"], r.group["model"]): (r.calls, r.input_tokens, r.output_tokens) for r in rows}
    if ours != plain:
        raise SystemExit("the rollup report differs from the raw GROUP BY")
    sample = min(count, 1_000_000)
    conn.execute("ATTACH ? AS sample", (str(folder / "sample.db"),))
    conn.execute(f"CREATE TABLE sample.records AS SELECT * FROM main.records ORDER BY ts LIMIT {sample}")
    figures[f"SQLite plain GROUP BY over {sample:,} raw rows, ms"] = best_ms(
        lambda: conn.execute(PLAIN.format(table="sample.records")).fetchall(), repeat=3
    )
    columns = conn.execute(
        "SELECT agent, model, t_input_tokens, t_output_tokens, cost FROM sample.records"
    ).fetchall()
    conn.close()
    figures.update(duckdb_figures(columns, sample))
    return figures


def duckdb_figures(rows: list[tuple[Any, ...]], sample: int) -> dict[str, float]:
    try:
        import duckdb
        import numpy as np
    except ImportError:
        print("  (duckdb or numpy not installed: DuckDB skipped; pip install duckdb==2.0.1)")
        return {}
    agents, models, inputs, outputs, costs = zip(*rows, strict=True)
    con = duckdb.connect()
    frame = {
        "agent": np.array(agents, dtype=object),
        "model": np.array(models, dtype=object),
        "t_input_tokens": np.array(inputs, dtype=np.int64),
        "t_output_tokens": np.array(outputs, dtype=np.int64),
        "cost": np.array(costs, dtype=object),
    }
    con.register("frame", frame)
    con.execute(
        "CREATE TABLE records AS SELECT agent, model, t_input_tokens, t_output_tokens,"
        " CAST(cost AS HUGEINT) AS cost FROM frame"
    )
    plain = best_ms(lambda: con.execute(PLAIN.format(table="records")).fetchall())
    exact = best_ms(
        lambda: con.execute(
            "SELECT agent, model, count(*), sum(t_input_tokens), sum(t_output_tokens), sum(cost)"
            " FROM records GROUP BY agent, model"
        ).fetchall()
    )
    con.close()
    return {
        f"DuckDB {duckdb.__version__} plain GROUP BY over {sample:,} rows, ms": plain,
        f"DuckDB … with exact HUGEINT cost sum over {sample:,} rows, ms": exact,
    }


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000, help="records in the report ledger")
    parser.add_argument("--writes", type=int, default=200_000, help="records in the write test")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of the write test (best of)"
    )
    args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    load = os.getloadavg()[0]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        writes = write_figures(args.writes, Path(tmp), max(1, args.rounds))
        print(
            f"SQLite ledger writes, {args.writes:,} records within one hour, best of {args.rounds} interleaved"
            f" rounds (load {load:.2f} → {os.getloadavg()[0]:.2f}):"
        )
        ceiling = max(writes[name] for name in CEILINGS)  # the fastest raw way to write these rows
        cpu_ceiling = max(writes[name] for name in CPU_CEILINGS)
        for name, value in writes.items():
            base = cpu_ceiling if name.startswith("…") else ceiling
            print(f"  {name:58s} {value:12,.0f}   ({value / base:.2f}× same-rows ceiling)")
        results |= writes
        if args.records <= 0:
            print(f"load average at the end: {os.getloadavg()[0]:.2f}")
            return results
        report = report_figures(args.records, Path(tmp))
        print(f"report agent × model over {args.records:,} records:")
        for name, value in report.items():
            print(f"  {name:58s} {value:12,.1f}")
        rollup = report["report agent×model, whole ledger (rollup), ms"]
        for name, value in report.items():
            if "GROUP BY" in name:
                print(f"  report is {value / rollup:,.1f}× faster than: {name.removesuffix(', ms')}")
        results |= report
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return results


if __name__ == "__main__":
    main()
