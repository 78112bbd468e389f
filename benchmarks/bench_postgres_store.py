"""Postgres ledger: write throughput from several processes, and the many-writer simulation behind
docs/scaling.md, all against a real server.

python benchmarks/bench_postgres_store.py [--url postgresql://postgres@127.0.0.1:5432/test]
    [--processes 4] [--per-process 50000] [--sim-processes 16] [--sim-per-process 10000]

Writes go through the real path: `tracker.record()` → `PostgresStore` (background writer, COPY into a
staging table, idempotent insert + rollup upsert) → committed. The ceiling line is one process COPY'ing
the same number of ready-made rows straight into a plain table (no rollup, no idempotency check).
Each run uses a fresh schema, dropped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tokentrail as tt
from _timing import machine
from tokentrail.stores.base import Query
from tokentrail.stores.postgres import PostgresStore
from tokentrail.tracker import Tracker

AGENTS = [f"agent-{i}" for i in range(20)]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "o3"]
USAGES = [tt.Usage(input_tokens=100 + i, output_tokens=20 + i % 50) for i in range(64)]
START = datetime(2025, 6, 1, tzinfo=timezone.utc)


def _writer(
    url: str, schema: str, spool: str, worker: int, count: int, batch: int, go: Any, out: Any, shared: bool
) -> None:
    store = PostgresStore(url, schema=schema, batch_size=batch, spool=spool)
    tracker = Tracker(store=store)
    step = timedelta(days=1) / max(count, 1)
    calls = [
        (USAGES[i % 64], MODELS[(i // 20) % 5], AGENTS[(i + worker) % 20], START + i * step)
        for i in range(count)
    ]
    go.wait()
    started = time.perf_counter()
    for usage, model, agent, at in calls:
        tracker.record(usage, model, agent=agent, session="all" if shared else f"m{worker}", at=at)
    recorded = time.perf_counter()
    store.close()  # everything committed
    done = time.perf_counter()
    out.put((worker, recorded - started, done - started, tracker.sink_errors, store._spool.spooled))


def run_writers(
    url: str, processes: int, per_process: int, batch: int, shared: bool = False
) -> dict[str, Any]:
    """`processes` writer processes × `per_process` records into one fresh schema; the measured figures.

    `shared`: every process writes the same rollup cells (same session), the worst case for row locks."""
    schema = f"tt_bench_{uuid.uuid4().hex[:10]}"
    spool = tempfile.mkdtemp(prefix="tt-spool-")
    PostgresStore(url, schema=schema, spool=spool).close()
    context = multiprocessing.get_context("spawn")
    go, out = context.Event(), context.Queue()
    workers = [
        context.Process(target=_writer, args=(url, schema, spool, n, per_process, batch, go, out, shared))
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    time.sleep(3.0)  # let every process import and connect before the clock starts
    started = time.perf_counter()
    go.set()
    results = [out.get(timeout=900) for _ in workers]
    wall = time.perf_counter() - started
    for worker in workers:
        worker.join(60)
    total = processes * per_process
    with PostgresStore(url, schema=schema, spool=spool) as store:
        tracker = Tracker(store=store)
        totals = tracker.totals()
        assert totals.calls == total, (totals.calls, total)
        report_ms = min(_timed(lambda: store.summary(Query(), ("agent", "model"))) for _ in range(5))
        day_ms = min(
            _timed(lambda: tracker.summary(("agent",), since=START + timedelta(hours=3, minutes=7)))
            for _ in range(5)
        )
        stats = store.stats()
        store.drop_schema()
    shutil.rmtree(spool, ignore_errors=True)
    return {
        "processes": processes,
        "records": total,
        "wall_s": wall,
        "records_per_s": total / wall,
        "record_call_us": sum(r[1] for r in results) / total * 1e6,
        "slowest_process_s": max(r[2] for r in results),
        "sink_errors": sum(r[3] for r in results),
        "spooled_batches": sum(r[4] for r in results),
        "report_ms": report_ms,
        "cut_report_ms": day_ms,
        "rollup_rows": stats["rollup_rows"],
        "server_mb": stats["server_bytes"] / 2**20,
        "partitions": stats["partitions"],
    }


def copy_ceiling(url: str, count: int) -> float:
    """Rows/s of one process COPY'ing `count` ready-made rows of the same width into a plain table."""
    import psycopg

    schema = f"tt_bench_{uuid.uuid4().hex[:10]}"
    width = 38
    row = [str(uuid.uuid4()), *range(width - 1)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        columns = ", ".join(f"c{i} BIGINT" for i in range(width - 1))
        conn.execute(f'CREATE TABLE "{schema}".raw (id UUID PRIMARY KEY, {columns})')
        started = time.perf_counter()
        for first in range(0, count, 2000):
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(f'COPY "{schema}".raw FROM STDIN') as copy,
            ):
                for i in range(first, min(first + 2000, count)):
                    row[0] = str(uuid.UUID(int=i))
                    copy.write_row(row)
        elapsed = time.perf_counter() - started
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return count / elapsed


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("TOKENTRAIL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--per-process", type=int, default=50_000)
    parser.add_argument("--sim-processes", type=int, default=16)
    parser.add_argument("--sim-per-process", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    ceiling = copy_ceiling(args.url, args.processes * args.per_process // 2)
    print(f"ceiling: one process COPY of plain rows          {ceiling:>12,.0f} rows/s")
    for processes, per_process, shared in (
        (args.processes, args.per_process, False),
        (args.sim_processes, args.sim_per_process, False),
        (args.sim_processes, args.sim_per_process, True),
    ):
        found = run_writers(args.url, processes, per_process, args.batch, shared)
        print(
            f"{processes:>2} writer processes × {per_process:,} records{' (shared cells)' if shared else ''}: {found['records_per_s']:>12,.0f} records/s"
            f"  (wall {found['wall_s']:.2f} s, record() {found['record_call_us']:.1f} µs/call,"
            f" slowest process {found['slowest_process_s']:.2f} s, sink errors {found['sink_errors']},"
            f" spooled batches {found['spooled_batches']})"
        )
        print(
            f"    ledger: {found['records']:,} records, {found['rollup_rows']:,} rollup rows,"
            f" {found['partitions']} partition(s), {found['server_mb']:.1f} MB on the server;"
            f" agent × model report {found['report_ms']:.1f} ms, report cut mid-hour {found['cut_report_ms']:.1f} ms"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
