"""`tokentrail report` and `tokentrail stats` over a SQLite ledger."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import tokentrail as tt
from tokentrail import cli
from tokentrail.cli import app
from tokentrail.tracker import Tracker

runner = CliRunner()
T0 = datetime(2025, 6, 1, 10, 0, tzinfo=timezone.utc)
USAGE = tt.Usage(input_tokens=1000, output_tokens=100)


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    tracker = Tracker(store=url)
    tracker.record(USAGE, "gpt-4o", agent="researcher", at=T0, tags=["eval"])
    tracker.record(USAGE, "gpt-4o", agent="researcher", at=T0 + timedelta(hours=1))
    tracker.record(USAGE, "claude-sonnet-4-5", agent="writer", at=T0 + timedelta(days=1))
    tracker.record(USAGE, "acme-private", agent="x'; DROP TABLE records;--", at=T0)
    tracker.store.close()  # type: ignore[attr-defined]
    return url


def test_report_table(ledger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(width=200))
    result = runner.invoke(app, ["report", "--store", ledger, "--by", "agent,model"])
    assert result.exit_code == 0, result.output
    assert "researcher" in result.output and "claude-sonnet-4-5" in result.output
    assert "x'; DROP TABLE records;--" in result.output
    assert "could not be priced" in result.output


def test_report_json_is_exact_and_filtered(ledger: str) -> None:
    result = runner.invoke(
        app, ["report", "--store", ledger, "--by", "model", "--agent", "researcher", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    [row] = data["rows"]
    assert row["model"] == "gpt-4o" and row["calls"] == 2
    assert Decimal(row["cost"]) == tt.price(USAGE, "gpt-4o", at=T0).total * 2
    assert data["totals"]["calls"] == 2


def test_report_csv_with_time_range_and_tag(ledger: str) -> None:
    result = runner.invoke(
        app,
        [
            "report",
            "--store",
            ledger,
            "--by",
            "agent",
            "--since",
            "2025-06-01T10:30",
            "--until",
            "2025-06-02",
            "--format",
            "csv",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["agent"], r["calls"]) for r in rows] == [("researcher", "1")]
    tagged = runner.invoke(app, ["report", "--store", ledger, "--by", "tag", "--tag", "eval", "-f", "json"])
    assert [r["tag"] for r in json.loads(tagged.output)["rows"]] == ["eval"]


def test_stats(ledger: str) -> None:
    result = runner.invoke(app, ["stats", "--store", ledger])
    assert result.exit_code == 0, result.output
    assert "records" in result.output and "4" in result.output
    assert "unpriced records" in result.output and "file bytes" in result.output


def test_clear_errors(tmp_path: Path, ledger: str) -> None:
    missing = runner.invoke(app, ["report", "--store", f"sqlite:///{tmp_path / 'none.db'}"])
    assert missing.exit_code == 1 and "No ledger" in missing.output
    assert not (tmp_path / "none.db").exists()
    bad = runner.invoke(app, ["report", "--store", "nosuch://x"])
    assert bad.exit_code == 1 and "unknown store" in bad.output
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"garbage" * 200)
    broken = runner.invoke(app, ["stats", "--store", f"sqlite:///{corrupt}"])
    assert broken.exit_code == 1 and "corrupt" in broken.output
    wrong_key = runner.invoke(app, ["report", "--store", ledger, "--by", "colour"])
    assert wrong_key.exit_code != 0
    wrong_time = runner.invoke(app, ["report", "--store", ledger, "--since", "yesterday"])
    assert wrong_time.exit_code != 0


def test_report_since_an_age(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recent.db'}"
    tracker = Tracker(store=url)
    now = datetime.now(timezone.utc)
    tracker.record(USAGE, "gpt-4o", agent="old", at=now - timedelta(days=10))
    tracker.record(USAGE, "gpt-4o", agent="new", at=now - timedelta(hours=30))
    tracker.store.close()  # type: ignore[attr-defined]
    week = runner.invoke(
        app, ["report", "--store", url, "--by", "agent", "--since", "7d", "--format", "json"]
    )
    assert week.exit_code == 0, week.output
    assert [row["agent"] for row in json.loads(week.output)["rows"]] == ["new"]
    day = runner.invoke(
        app, ["report", "--store", url, "--by", "agent", "--since", "24h", "--format", "json"]
    )
    assert json.loads(day.output)["rows"] == []
    bad = runner.invoke(app, ["report", "--store", url, "--since", "3 fortnights"])
    assert bad.exit_code != 0 and "--since must be an ISO date" in bad.output and "or an age" in bad.output
