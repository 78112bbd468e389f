"""`tokentrail import` of a TinyAgent `save_to_file` report (fixture shape: fixtures/README.md)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import tokentrail as tt
from tokentrail.reports.export import detect_format, tinyagent_records

from .conftest import history

REPORT = Path(__file__).parent / "fixtures" / "tinyagent_report.json"
AT = "2025-08-01T10:00:00+00:00"


def _import(cli: Any, url: str, *extra: str) -> Any:
    return cli("import", str(REPORT), "--store", url, "--at", AT, *extra)


def test_a_tinyagent_report_is_recognised_by_its_shape() -> None:
    assert detect_format(REPORT) == "tinyagent"


def test_each_tracker_gets_its_own_calls_not_its_childrens(tmp_path: Path, cli: Any) -> None:
    url = f"sqlite:///{tmp_path / 'ta.db'}"
    result = _import(cli, url)
    assert result.exit_code == 0, result.output
    assert "Imported 3 new records" in result.output
    got = {
        (r.path, r.model): (r.usage.requests, r.usage.input_tokens, r.usage.output_tokens, r.provider_cost)
        for r in history(url)
    }
    assert got == {
        (("main_agent",), "gpt-4o-mini"): (3, 3_000, 600, Decimal("0.00081")),
        (("main_agent", "sub_agent"), "gpt-4o-mini"): (1, 1_000, 100, Decimal("0.00021")),
        (("main_agent", "sub_agent"), "claude-3-haiku-20240307"): (2, 2_000, 400, Decimal("0.001")),
    }


def test_totals_equal_the_reports_totals_to_the_token(tmp_path: Path, cli: Any) -> None:
    url = f"sqlite:///{tmp_path / 'ta.db'}"
    _import(cli, url)
    report = json.loads(REPORT.read_text(encoding="utf-8"), parse_float=Decimal)
    tracker = tt.Tracker(url)
    totals = tracker.totals()
    main_only = tracker.totals(agent="main_agent")
    tracker.store.close()  # type: ignore[attr-defined]
    total = report["total_usage"]
    assert totals.usage.requests == total["call_count"] == 6
    assert (
        totals.input_tokens == total["prompt_tokens"] and totals.output_tokens == total["completion_tokens"]
    )
    assert totals.usage.cache_read_tokens == 400 and totals.usage.reasoning_tokens == 40
    assert totals.provider_cost == sum(Decimal(str(s["cost"])) for s in report["model_breakdown"].values())
    assert main_only.usage.requests == 3


def test_entries_are_priced_with_the_catalog_and_keep_tinyagents_cost_beside(
    tmp_path: Path, cli: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'ta.db'}"
    _import(cli, url)
    main = next(r for r in history(url) if r.path == ("main_agent",))
    expected = tt.price(
        tt.Usage(3_000, 600, cache_read_tokens=400, requests=3), "gpt-4o-mini", at=datetime.fromisoformat(AT)
    )
    assert main.cost == expected.total == Decimal("0.00078")
    assert main.provider_cost == Decimal("0.00081")
    assert main.agent == "main_agent" and main.timestamp == datetime(2025, 8, 1, 10, tzinfo=timezone.utc)


def test_importing_the_report_twice_adds_nothing(tmp_path: Path, cli: Any) -> None:
    url = f"sqlite:///{tmp_path / 'ta.db'}"
    _import(cli, url)
    again = _import(cli, url)
    assert "Imported 0 new records" in again.output and "3 already in the ledger" in again.output
    later = cli("import", str(REPORT), "--store", url, "--at", "2025-09-01T00:00:00")
    assert later.exit_code == 0
    assert len(history(url)) == 3  # same content, same ids: the ledger ignores them at any time


def test_ids_come_from_the_content() -> None:
    report = json.loads(REPORT.read_text(encoding="utf-8"), parse_float=Decimal)
    at = datetime(2025, 8, 1, tzinfo=timezone.utc)
    first = [r.id for r in tinyagent_records(report, at)]
    assert first == [r.id for r in tinyagent_records(report, datetime(2030, 1, 1, tzinfo=timezone.utc))]
    report["session_duration_seconds"] = Decimal("99.5")  # another session with the same figures
    assert not set(first) & {r.id for r in tinyagent_records(report, at)}


def test_a_report_without_children_or_model_breakdown_still_imports(tmp_path: Path, cli: Any) -> None:
    flat = tmp_path / "flat.json"
    usage = {"prompt_tokens": 500, "completion_tokens": 50, "total_tokens": 550, "cost": 0.0, "call_count": 2}
    flat.write_text(
        json.dumps(
            {"tracker_name": "solo", "total_usage": usage, "model_breakdown": {}, "child_trackers": []}
        ),
        encoding="utf-8",
    )
    url = f"sqlite:///{tmp_path / 'flat.db'}"
    assert cli("import", str(flat), "--store", url).exit_code == 0
    (record,) = history(url)
    assert (record.model, record.usage.requests, record.provider_cost, record.cost) == (None, 2, None, None)
    assert record.unpriced_reason


def test_a_report_whose_children_exceed_the_parent_is_refused(tmp_path: Path, cli: Any) -> None:
    report = json.loads(REPORT.read_text(encoding="utf-8"))
    report["model_breakdown"]["gpt-4o-mini"]["call_count"] = 1  # fewer than the child's
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(report), encoding="utf-8")
    result = cli("import", str(bad), "--store", f"sqlite:///{tmp_path / 'b.db'}", "--format", "tinyagent")
    assert result.exit_code == 1 and "children exceed the parent" in result.output
