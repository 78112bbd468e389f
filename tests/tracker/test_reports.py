"""The rich report and the JSON/CSV exports."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from rich.console import Console

import tokentrail as tt
from tokentrail.reports import export
from tokentrail.reports.tables import format_usd, print_report, render_text
from tokentrail.scope import scope
from tokentrail.tracker import Tracker

USAGE = tt.Usage(input_tokens=1_000, output_tokens=200, cache_read_tokens=300)


@pytest.fixture
def team() -> Tracker:
    tracker = Tracker()
    with scope(agent="researcher", session="s1", tags=["eval"]):
        tracker.record(USAGE, "gpt-4o", duration_ms=250.0, tool="search")  # $0.004125
        tracker.record(USAGE, "gpt-4o", duration_ms=250.0, provider_cost="0.0042")
    with scope(agent="reviewer"):
        tracker.record(USAGE, "claude-sonnet-4-5")  # $0.00519
        tracker.record(USAGE, "acme-private")
    tracker.child("writer").record(
        tt.Usage(input_tokens=10, output_tokens=3, input_audio_tokens=4, requests=2),
        "gpt-4o",
        context={"service_tier": "default"},
    )
    tracker.record(tt.Usage.unknown("stream cut before usage"), "gpt-4o")
    return tracker


def test_the_report_shows_totals_agents_models_and_shares(team: Tracker) -> None:
    text = render_text(team)
    assert "Totals" in text and "By agent" in text and "By model" in text and "By tool" in text
    for name in ("researcher", "reviewer", "writer", "gpt-4o", "claude-sonnet-4-5", "acme-private"):
        assert name in text
    assert format_usd(team.totals().cost, exact=True) in text
    claude_share = team.totals(model="claude-sonnet-4-5").cost_units * 100 / team.totals().cost_units
    assert f"{claude_share:.1f}%" in text


def test_unpriced_calls_are_flagged_not_shown_as_zero(team: Tracker) -> None:
    text = render_text(team)
    acme_line = next(line for line in text.splitlines() if "acme-private" in line)
    assert "unpriced" in acme_line and "$0" not in acme_line
    assert "⚠ 2 of 6 calls could not be priced" in text


def test_the_report_shows_the_provider_reported_difference(team: Tracker) -> None:
    text = render_text(team)
    assert "Provider-reported cost" in text
    assert "+$0.000075" in text


def test_the_report_shows_the_hierarchy_with_children_included(team: Tracker) -> None:
    text = render_text(team)
    assert "By node (children included)" in text
    assert "(all)" in text


def test_print_report_writes_to_the_given_console(team: Tracker) -> None:
    buffer = io.StringIO()
    print_report(team, console=Console(file=buffer, width=120, color_system=None))
    assert "By model" in buffer.getvalue()


def test_an_empty_tracker_reports_zeros() -> None:
    text = render_text(Tracker())
    assert "Calls" in text and "By agent" not in text


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_save_then_load_gives_back_the_same_records(team: Tracker, tmp_path: Path, suffix: str) -> None:
    path = export.save(team, tmp_path / f"usage{suffix}")
    loaded = export.load(path)
    assert loaded.history() == team.history()
    assert loaded.totals() == team.totals()


def test_load_into_an_existing_tracker_adds_the_records(team: Tracker, tmp_path: Path) -> None:
    path = export.save(team, tmp_path / "usage.json")
    target = Tracker()
    target.record(USAGE, "gpt-4o")
    export.load(path, target)
    assert target.totals().calls == team.totals().calls + 1


def test_json_export_has_summaries_and_exact_cost_strings(team: Tracker) -> None:
    data = json.loads(export.to_json(team))
    assert data["totals"]["cost"] == str(team.totals().cost)
    assert {row["agent"] for row in data["by_agent"]} == {"researcher", "reviewer", "writer", None}
    assert len(data["records"]) == 6
    priced = next(r for r in data["records"] if r["model"] == "claude-sonnet-4-5")
    assert priced["cost"] == "0.00519" and priced["price_rule"]["provider"] == "anthropic"


def test_csv_export_has_one_row_per_call_with_a_header(team: Tracker) -> None:
    lines = export.to_csv(team).splitlines()
    assert lines[0].startswith("id,timestamp,model,provider,agent")
    assert len(lines) == 7


def test_records_survive_a_dict_round_trip_with_their_time_to_the_microsecond() -> None:
    tracker = Tracker()
    at = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=timezone.utc)
    record = tracker.record(USAGE, "gpt-4o", at=at, duration_ms=0.1 + 0.2)
    again = export.record_from_dict(json.loads(json.dumps(export.record_to_dict(record))))
    assert again == record
    assert again.timestamp == at


def test_exports_keep_the_pre_call_estimate_and_time_to_first_token(tmp_path: Path) -> None:
    from tokentrail.reports.export import load, save

    tracker = tt.Tracker()
    tracker.record(tt.Usage(1_000, 10), model="gpt-4o", estimated_input_tokens=960, ttft_ms=0.1 + 0.2)
    tracker.record(tt.Usage(500, 10), model="gpt-4o")
    for suffix in (".json", ".csv"):
        path = tmp_path / f"export{suffix}"
        save(tracker, path)
        loaded = load(path).history()
        estimates = sorted((r.estimated_input_tokens or 0) for r in loaded)
        assert estimates == [0, 960], suffix
        assert sorted(r.ttft_ms or 0.0 for r in loaded) == [0.0, 0.1 + 0.2], suffix


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "soon", object()])
def test_a_bad_time_to_first_token_is_dropped_not_raised(bad: object) -> None:
    tracker = tt.Tracker()
    record = tracker.record(tt.Usage(10, 1), model="gpt-4o", ttft_ms=bad)  # type: ignore[arg-type]
    assert record.ttft_ms is None
    assert tracker.record(tt.Usage(10, 1), model="gpt-4o", ttft_ms=7).ttft_ms == 7.0
