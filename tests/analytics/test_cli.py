"""`tokentrail trends`, `forecast` and `advise` over a SQLite ledger."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import tokentrail as tt
from tokentrail.cli import analytics as _cli
from tokentrail.cli import app
from tokentrail.tracker import Tracker

runner = CliRunner()
TODAY = date(2025, 6, 21)
USAGE = tt.Usage(input_tokens=40_000, output_tokens=1_000)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(_cli, "console", Console(width=250))
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    tracker = Tracker(store=url)
    for back in range(1, 11):
        at = datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=timezone.utc) - timedelta(days=back)
        tracker.record(USAGE, "gpt-4o", agent="writer", session=f"s{back}", at=at)
    tracker.store.close()  # type: ignore[attr-defined]
    return url


def test_trends_json(ledger: str) -> None:
    result = runner.invoke(app, ["trends", "--store", ledger, "--by", "agent", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    one = tt.price(USAGE, "gpt-4o").total
    assert len(rows) == 10 and all(Decimal(r["cost_usd"]) == one for r in rows)
    assert rows[0]["period"] == "2025-06-11" and rows[0]["previous_cost_usd"] is None
    assert rows[1]["cost_change_pct"] == 0.0 and rows[1]["group"] == {"agent": "writer"}


def test_trends_table_by_week(ledger: str) -> None:
    result = runner.invoke(app, ["trends", "--store", ledger, "--period", "week"])
    assert result.exit_code == 0, result.output
    assert "2025-06-09" in result.output and "2025-06-16" in result.output


def test_trends_rejects_a_bad_period(ledger: str) -> None:
    result = runner.invoke(app, ["trends", "--store", ledger, "--period", "year"])
    assert result.exit_code != 0


def test_forecast_json_and_table(ledger: str) -> None:
    result = runner.invoke(
        app, ["forecast", "--store", ledger, "--today", TODAY.isoformat(), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    one = tt.price(USAGE, "gpt-4o").total
    assert Decimal(data["spent_usd"]) == one * 10  # 11–20 June
    assert Decimal(data["total_usd"]) == one * 20  # + the same daily cost for 21–30 June
    assert Decimal(data["low_usd"]) == Decimal(data["high_usd"]) == Decimal(data["total_usd"])
    assert data["method"] == "ols-daily-cost"
    table = runner.invoke(app, ["forecast", "--store", ledger, "--today", TODAY.isoformat()])
    assert table.exit_code == 0, table.output
    assert "month-end forecast" in table.output and "ols-daily-cost" in table.output


def test_forecast_without_history_exits_cleanly(ledger: str) -> None:
    result = runner.invoke(app, ["forecast", "--store", ledger, "--today", "2025-06-01"])
    assert result.exit_code == 1
    assert "No forecast" in result.output


def test_advise_json_and_table(ledger: str) -> None:
    result = runner.invoke(app, ["advise", "--store", ledger, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    [switch] = data["switches"]
    assert switch["agent"] == "writer" and switch["model"] == "gpt-4o"
    assert Decimal(switch["saving_usd"]) > 0
    [cache] = data["caching"]
    assert cache["input_tokens"] == 400_000 and cache["hit_rate"] == 0.0
    assert data["context"] == []
    table = runner.invoke(app, ["advise", "--store", ledger])
    assert table.exit_code == 0, table.output
    assert switch["candidate"] in table.output
    assert "Sessions at context limits: nothing to report" in table.output


def test_missing_ledger_is_reported(tmp_path: Path) -> None:
    result = runner.invoke(app, ["trends", "--store", f"sqlite:///{tmp_path / 'nope.db'}"])
    assert result.exit_code == 1


def test_filters_narrow_the_figures(ledger: str, tmp_path: Path) -> None:
    tracker = Tracker(store=ledger)
    at = datetime(2025, 6, 15, 8, tzinfo=timezone.utc)
    tracker.record(USAGE, "gpt-4o-mini", agent="reader", at=at)
    tracker.store.close()  # type: ignore[attr-defined]
    everyone = json.loads(runner.invoke(app, ["trends", "--store", ledger, "--format", "json"]).output)
    reader = json.loads(
        runner.invoke(app, ["trends", "--store", ledger, "--agent", "reader", "--format", "json"]).output
    )
    assert sum(r["calls"] for r in everyone) == 11
    assert [(r["period"], r["calls"]) for r in reader] == [("2025-06-15", 1)]
    assert Decimal(reader[0]["cost_usd"]) == tt.price(USAGE, "gpt-4o-mini").total
