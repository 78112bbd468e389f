"""SQLite store: batched write throughput against raw executemany (the ceiling), and summary latency.

python benchmarks/bench_store.py [records for the summary test, default 1_000_000]
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import tokentrail as tt
from tokentrail.stores.base import Query
from tokentrail.stores.sqlite import _INSERT_RECORD, SQLiteStore, _schema_v1
from tokentrail.tracker import Tracker

AGENTS = [f"agent-{i}" for i in range(20)]
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "o3"]
HOUR_US = 3_600_000_000


def make_records(count: int) -> list[tt.Record]:
    """`count` priced records spread over 20 agents × 5 models × 30 days."""
    tracker = Tracker()
    usages = [tt.Usage(input_tokens=100 + i, output_tokens=20 + i % 50) for i in range(64)]
    start = 1_748_736_000_000_000  # 2025-06-01 UTC
    step = 30 * 24 * HOUR_US // max(count, 1)
    records = []
    for i in range(count):
        record = tracker.record(usages[i % 64], MODELS[i % 5], agent=AGENTS[i % 20])
        record.timestamp_us = start + i * step
        records.append(record)
    return records


def write_throughput(records: list[tt.Record], folder: Path) -> tuple[float, float]:
    """(records/s through SQLiteStore.append + flush, rows/s of raw executemany of the same rows)."""
    store = SQLiteStore(folder / "store.db", batch_size=10_000, flush_interval=60)
    started = time.perf_counter()
    for record in records:
        store.append(record)
    store.flush()
    ours = len(records) / (time.perf_counter() - started)
    rows = [store._row(record) for record in records]
    store.close()
    raw = sqlite3.connect(folder / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("PRAGMA synchronous = NORMAL")
    for statement in _schema_v1():
        raw.execute(statement)
    started = time.perf_counter()
    for chunk in range(0, len(rows), 10_000):
        raw.execute("BEGIN")
        raw.executemany(_INSERT_RECORD, rows[chunk : chunk + 10_000])
        raw.execute("COMMIT")
    ceiling = len(rows) / (time.perf_counter() - started)
    raw.close()
    return ours, ceiling


def summary_latency(records: list[tt.Record], folder: Path) -> dict[str, float]:
    path = folder / "big.db"
    store = SQLiteStore(path, batch_size=50_000, flush_interval=60)
    for record in records:
        store.append(record)
    store.flush()
    timings: dict[str, float] = {}

    def best(fn: object, repeat: int = 5) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - started)
        return min(times) * 1000

    timings["summary agent×model (rollup)"] = best(lambda: store.summary(Query(), ("agent", "model")))
    window = Query(
        since_us=records[len(records) // 3].timestamp_us, until_us=records[2 * len(records) // 3].timestamp_us
    )
    timings["summary agent×model, since/until mid-hour"] = best(
        lambda: store.summary(window, ("agent", "model"))
    )
    conn = sqlite3.connect(path)
    timings["plain GROUP BY agent, model over raw rows"] = best(
        lambda: conn.execute(
            "SELECT agent, model, count(*), sum(t_input_tokens), sum(t_output_tokens) FROM records GROUP BY 1, 2"
        ).fetchall(),
        repeat=3,
    )
    conn.close()
    stats = store.stats()
    store.close()
    timings["rollup rows"] = stats["rollup_rows"]
    return timings


def main() -> dict[str, float]:
    count = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sample = make_records(200_000)
        ours, ceiling = write_throughput(sample, folder)
        results["write records/s"], results["raw executemany rows/s"] = ours, ceiling
        print("SQLite write throughput (200,000 records, same run):")
        print(f"  SQLiteStore append + batched flush      {ours:12,.0f} records/s")
        print(
            f"  raw executemany of the same rows        {ceiling:12,.0f} rows/s   ({ours / ceiling:.2f}× ceiling)"
        )
        del sample
        records = make_records(count)
        timings = summary_latency(records, folder)
        print(f"summary over {count:,} records:")
        for name, value in timings.items():
            unit = "" if name == "rollup rows" else " ms"
            print(f"  {name:42s} {value:10,.1f}{unit}")
        results.update(timings)
    return results


if __name__ == "__main__":
    main()
