"""Session views, server side (issue 20 point 6): a session of 10,000 calls rendered (read from a SQLite
ledger, tree and context fill built, HTML page and JSON made) and the session list over a large ledger.

    ../.venv/bin/python bench_sessions.py                       # 10,000-call session; list over 1 M records
    ../.venv/bin/python bench_sessions.py --records 10000000    # the issue's 10 M ledger (minutes to build)

The large ledger is written through the store's own batch path (`SQLiteStore.append`, flushed 50,000
records a transaction: the same rows, hourly/daily and per-session rollups a tracker's writes make), from
records built directly (one priced template per model × usage, copied with a new id, time and
attribution) instead of one `tracker.record()` each. It holds the 10,000-call session too, so the page is
also measured inside it.

Goals: the session page ≤ 300 ms, the list ≤ 200 ms. Figures are best of 5 (list: best of 3).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tokentrail as tt
from _timing import machine
from tokentrail.server._session import build_run, load_run, run_view
from tokentrail.server._session_pages import render_run
from tokentrail.server._sessions import SessionListing, list_sessions

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-haiku-20241022", "my-local-model")


def best_ms(work: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        times.append((time.perf_counter() - began) * 1000)
    return min(times)


def write_session(url: str, calls: int) -> None:
    writer = tt.Tracker(store=url)
    with tt.scope(session="big-run"), tt.scope(agent="planner"):
        for index in range(calls):
            agent = ("researcher", "writer", "critic")[index % 3]
            with tt.scope(agent=agent):
                writer.record(
                    tt.Usage(1000 + (index % 500) * 200, 200),
                    model=MODELS[index % len(MODELS)],
                    duration_ms=400.0,
                    ttft_ms=80.0,
                    at=START + timedelta(seconds=index),
                )
    writer.store.close()  # type: ignore[attr-defined]


def bench_session(calls: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'session.db'}"
        write_session(url, calls)
        reader = tt.Tracker(store=url)
        records = reader.history(session="big-run")
        assert len(records) == calls
        load = best_ms(lambda: reader.history(session="big-run"))
        run = build_run("big-run", records)
        build = best_ms(lambda: build_run("big-run", records))
        page = best_ms(lambda: render_run(run, None, 1, 2000))
        detail = best_ms(lambda: render_run(run, f"{records[calls // 2].id:032x}", 1, 2000))
        api = best_ms(lambda: run_view(run, 500, 0))
        whole = best_ms(lambda: render_run(load_run(reader, "big-run"), None, 1, 2000))  # type: ignore[arg-type]
        size = len(render_run(run, None, 1, 2000))
        reader.store.close()  # type: ignore[attr-defined]
    print(f"\nsession of {calls:,} calls (SQLite ledger holding only it)")
    print(f"  read the records (history by session)   {load:8.1f} ms")
    print(f"  tree, fills, context warnings            {build:8.1f} ms")
    print(f"  HTML page (timeline page 1)              {page:8.1f} ms  ({size / 1024:,.0f} KiB)")
    print(f"  HTML page with a call open               {detail:8.1f} ms")
    print(f"  JSON (/api/sessions/{{id}}, 500 calls)     {api:8.1f} ms")
    print(f"  the page end to end (read + build + HTML) {whole:7.1f} ms   goal ≤ 300 ms")


def write_ledger(path: Path, records: int, per_session: int, big_session: int) -> None:
    """`records` calls in sessions of `per_session` calls, 5 s apart, by three agents (of 20) each calling
    its model, the sessions spread over 30 days, plus one session of `big_session` calls; written through
    the store's batch path."""
    from tokentrail._record import Record, intern_attribution
    from tokentrail.stores.sqlite import SQLiteStore

    store = SQLiteStore(path, batch_size=50_000, flush_interval=3600.0)
    priced = tt.Tracker()  # prices each template once, as `record()` would
    templates = {
        (model, step): priced.record(tt.Usage(500 + step, 100), model=model, duration_ms=300.0)
        for model in MODELS
        for step in range(per_session)
    }
    rules = {model: templates[(model, 0)].price_rule for model in MODELS}  # one object a model, as
    assert all(t.price_rule == rules[m] for (m, _), t in templates.items())  # a tracker's catalog gives
    sessions = max(records // per_session, 1)
    span_us = 30 * 86_400_000_000
    start_us = int(START.timestamp() * 1_000_000)
    began = time.perf_counter()
    written = 0
    next_id = 1 << 100
    for session in range(sessions):
        first = start_us + session * span_us // sessions
        name = f"s-{session:07d}"
        for step in range(per_session):
            worker = (session + step % 3) % 20  # three agents a session, each with its model
            agent = f"agent-{worker}"
            template = templates[(MODELS[worker % len(MODELS)], step)]
            store.append(
                Record(
                    next_id,
                    first + step * 5_000_000,
                    template.usage,
                    template.model,
                    template.provider,
                    template.cost_units,
                    rules[template.model or ""],
                    template.unpriced_reason,
                    template.duration_ms,
                    intern_attribution(agent, name, None, None, (), ()),
                )
            )
            next_id += 1
        written += per_session
        if written % 50_000 < per_session:
            store.flush()
            print(f"  … {written:,} records, {time.perf_counter() - began:.0f} s", end="\r", flush=True)
    store.close()
    if big_session:
        write_session(f"sqlite:///{path}", big_session)
    print(f"  built {written + big_session:,} records in {time.perf_counter() - began:.1f} s          ")


def bench_list(records: int, per_session: int, calls: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as folder:
        path = Path(folder) / "ledger.db"
        url = f"sqlite:///{path}"
        print(
            f"\nsession list over {records:,} records ({records // per_session:,} sessions of {per_session})"
            f" and one session of {calls:,} calls"
        )
        write_ledger(path, records, per_session, calls)
        reader = tt.Tracker(store=url)
        store = getattr(reader.store, "inner", reader.store)
        path_taken = (
            "per-session rollup" if hasattr(store, "sessions") else "summaries by (session, agent, hour)"
        )
        for title, listing in (
            ("newest 50", SessionListing()),
            ("by cost, page 3", SessionListing(sort="cost", offset=100)),
            ("by tokens, ascending", SessionListing(sort="tokens", descending=False)),
            ("search 's-00012'", SessionListing(search="s-00012")),
            ("active in the last day", SessionListing(since=START + timedelta(days=29))),
            (
                "active in one hour (both bounds)",
                SessionListing(since=START + timedelta(days=15), until=START + timedelta(days=15, hours=1)),
            ),
        ):
            took = best_ms(lambda listing=listing: list_sessions(reader, listing), repeat=3)
            print(f"  {title:<34} {took:9.1f} ms   goal ≤ 200 ms  ({path_taken})")
        if calls:
            load = best_ms(lambda: reader.history(session="big-run"))
            whole = best_ms(lambda: render_run(load_run(reader, "big-run"), None, 1, 2000))  # type: ignore[arg-type]
            small = best_ms(lambda: render_run(load_run(reader, "s-0000500"), None, 1, 2000))  # type: ignore[arg-type]
            print(f"  the {calls:,}-call session's records in this ledger  {load:8.1f} ms")
            print(f"  its page end to end (read + build + HTML)     {whole:8.1f} ms   goal ≤ 300 ms")
            print(f"  a {per_session}-call session's page end to end        {small:8.1f} ms")
        reader.store.close()  # type: ignore[attr-defined]
        print(f"  ledger file {path.stat().st_size / 1e6:,.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000, help="calls in the one big session")
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the list's ledger")
    parser.add_argument("--per-session", type=int, default=100, help="calls per session in that ledger")
    args = parser.parse_args()
    print(f"{machine()}; load {os.getloadavg()[0]:.2f}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    bench_session(args.calls)
    bench_list(args.records, args.per_session, args.calls)
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
