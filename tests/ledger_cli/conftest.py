"""Ledgers for the ledger commands: SQLite files in tmp_path with known records and exact costs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tokentrail as tt
from tokentrail.cli import app

T0 = datetime(2025, 8, 1, 9, 0, 0, 123_456, tzinfo=timezone.utc)
HOSTILE = {
    "sql": "x'; DROP TABLE records;--",
    "emoji": "agent 🤖 ✨ 数据",
    "long": "L" * 10_240,
    "markup": "[bold red]not markup[/] $x$ \\n",
}


def record_sample(tracker: tt.Tracker) -> None:
    """Ten records over three hours (five in one hour), priced and unpriced, hostile names included."""
    sizes = [(1_000, 100), (2_000, 200), (3_000, 300), (4_000, 400), (5_000, 500)]
    for i, (prompt, output) in enumerate(sizes):  # five in the 09:00 hour
        tracker.record(
            tt.Usage(prompt, output), "gpt-4o", "openai", at=T0 + timedelta(minutes=i), agent="researcher"
        )
    tracker.record(
        tt.Usage(10_000, 1_000), "gpt-4o-mini", "openai", at=T0 + timedelta(hours=1), agent="writer"
    )
    tracker.record(
        tt.Usage(700, 70),
        "my-finetune",
        "openai",
        at=T0 + timedelta(hours=1, minutes=5),
        agent=HOSTILE["sql"],
    )
    tracker.record(
        tt.Usage(1_200, 30, cache_read_tokens=200),
        "claude-sonnet-4-20250514",
        "anthropic",
        at=T0 + timedelta(hours=3),
        agent=HOSTILE["emoji"],
        session=HOSTILE["long"],
        tags=[HOSTILE["markup"], "t2"],
    )
    tracker.record(
        tt.Usage(50, 5), "gpt-4o", "openai", at=T0 + timedelta(hours=3, seconds=1), agent="researcher"
    )
    tracker.record(tt.Usage(60, 6), "gpt-4o", "openai", at=T0 + timedelta(hours=3, seconds=1), agent="writer")


def make_ledger(path: Path) -> str:
    url = f"sqlite:///{path}"
    tracker = tt.Tracker(url)
    record_sample(tracker)
    tracker.store.close()  # type: ignore[attr-defined]
    return url


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    return make_ledger(tmp_path / "usage.db")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner) -> Iterator[object]:
    def invoke(*args: str) -> object:
        return runner.invoke(app, list(args), catch_exceptions=False)

    yield invoke


def history(url: str) -> list[tt.Record]:
    tracker = tt.Tracker(url)
    try:
        return tracker.history()
    finally:
        tracker.store.close()  # type: ignore[attr-defined]
