"""Non-token charges shown as their own column: the terminal report ("Other", after Cost, dropped early
on a narrow terminal), `tokentrail report --format json/csv`, and record exports (JSON, CSV) and imports."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import tokentrail as tt
from tokentrail import cli
from tokentrail.cli import app
from tokentrail.reports import export
from tokentrail.reports.tables import render_text, summary_table
from tokentrail.tracker import Tracker

runner = CliRunner()
T0 = datetime(2025, 6, 1, 10, 0, tzinfo=timezone.utc)
SONAR = tt.Usage(1_000, 3_000)  # perplexity/sonar-pro: a per-request fee beside its tokens
SEARCHED = tt.Usage(2_000, 100, web_searches=3)  # openai/gpt-4o: web searches
PLAIN = tt.Usage(1_000, 100)


def ledger(tracker: Tracker) -> Tracker:
    tracker.record(SONAR, "sonar-pro", "perplexity", agent="researcher", at=T0)
    tracker.record(SEARCHED, "gpt-4o", "openai", agent="researcher", at=T0)
    tracker.record(PLAIN, "gpt-4o", "openai", agent="writer", at=T0)
    tracker.record(PLAIN, "acme-private", agent="writer", at=T0)
    return tracker


def part(usage: tt.Usage, model: str, provider: str) -> Decimal:
    return tt.price(usage, model, provider, at=T0).non_token


def render(table: object, width: int) -> str:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_the_report_has_an_other_column_after_cost() -> None:
    tracker = ledger(Tracker())
    researcher = part(SONAR, "sonar-pro", "perplexity") + part(SEARCHED, "gpt-4o", "openai")
    assert researcher > 0
    text = render_text(tracker, width=160)
    header = next(line for line in text.splitlines() if "Agent" in line and "Cost" in line)
    assert re.search(r"Cost\s+Other\s+Share", header)
    line = next(line for line in text.splitlines() if line.strip().startswith("researcher"))
    assert f"${researcher.quantize(Decimal('0.000001')):,}" in line
    writer = next(line for line in text.splitlines() if line.strip().startswith("writer"))
    assert "$0.000000" in writer  # a priced group without such charges shows 0
    assert re.search(rf"other than tokens\s+\${re.escape(f'{researcher:,}')}", text)  # totals, exact


def test_the_other_column_is_left_out_when_no_row_has_a_charge_and_dropped_early() -> None:
    tracker = Tracker()
    tracker.record(PLAIN, "gpt-4o", "openai", agent="a", at=T0)
    text = render_text(tracker, width=160)
    assert "Other" not in text and "other than tokens" not in text
    rows = ledger(Tracker()).summary("agent")
    totals = ledger(Tracker()).totals()
    wide = render(summary_table("By agent", ("agent",), rows, totals), 160)
    assert "Other" in wide and "Share" in wide and "Unpriced" in wide
    narrow = render(summary_table("By agent", ("agent",), rows, totals), 70)
    assert "Share" not in narrow and "Other" not in narrow  # Share first, then Other
    assert "Cost" in narrow and "Output" in narrow and "Calls" in narrow


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    tracker = ledger(Tracker(store=url))
    tracker.store.close()  # type: ignore[attr-defined]
    return url


def test_report_json_and_csv_have_the_non_token_cost(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    researcher = part(SONAR, "sonar-pro", "perplexity") + part(SEARCHED, "gpt-4o", "openai")
    result = runner.invoke(app, ["report", "--store", store_url, "--by", "agent", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_agent = {row["agent"]: row for row in data["rows"]}
    assert Decimal(by_agent["researcher"]["non_token_cost"]) == researcher
    assert Decimal(by_agent["writer"]["non_token_cost"]) == 0
    assert Decimal(data["totals"]["non_token_cost"]) == researcher
    result = runner.invoke(app, ["report", "--store", store_url, "--by", "agent", "--format", "csv"])
    rows = {row["agent"]: row for row in csv.DictReader(io.StringIO(result.output))}
    assert Decimal(rows["researcher"]["non_token_cost"]) == researcher
    monkeypatch.setattr(cli, "console", Console(width=200, color_system=None))
    result = runner.invoke(app, ["report", "--store", store_url, "--by", "agent"])
    assert result.exit_code == 0 and "Other" in result.output


@pytest.mark.parametrize("suffix", [".json", ".csv", ".jsonl"])
def test_exports_keep_each_records_non_token_cost(tmp_path: Path, suffix: str) -> None:
    tracker = ledger(Tracker())
    records = tracker.history()
    assert [r.non_token_cost for r in records] == [
        part(SONAR, "sonar-pro", "perplexity"),
        part(SEARCHED, "gpt-4o", "openai"),
        Decimal(0),
        None,
    ]
    dicts = [export.record_to_dict(r) for r in records]
    assert [d["non_token_cost"] for d in dicts] == [
        str(part(SONAR, "sonar-pro", "perplexity")),
        str(part(SEARCHED, "gpt-4o", "openai")),
        "0",
        None,
    ]
    if suffix == ".csv":
        back = export.read_csv(export.to_csv(tracker))
    elif suffix == ".json":
        back = export.read_json(export.to_json(tracker))
    else:
        stream = io.StringIO()
        export.write_jsonl_pages([records], stream)
        back = [export.record_from_dict(json.loads(line)) for line in stream.getvalue().splitlines()]
    assert [r.non_token_units for r in back] == [r.non_token_units for r in records]
    assert "non_token_cost" in export.CSV_COLUMNS


def test_an_export_made_before_the_column_reads_as_zero() -> None:
    record = ledger(Tracker()).history()[0]
    data = export.record_to_dict(record)
    del data["non_token_cost"]
    assert export.record_from_dict(data).non_token_units == 0
    assert export.record_from_dict(data).cost_units == record.cost_units
