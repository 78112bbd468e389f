"""`tokentrail export` and `tokentrail import`: every format round-trips records exactly, in pages."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tokentrail as tt
from tokentrail.reports import export
from tokentrail.reports.export import iter_record_pages, record_to_dict

from .conftest import HOSTILE, T0, history, make_ledger, record_sample

FORMATS = ("json", "jsonl", "csv", "parquet")


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_import_gives_identical_records(fmt: str, ledger: str, tmp_path: Path, cli: Any) -> None:
    out = tmp_path / f"usage.{fmt}"
    result = cli("export", "--store", ledger, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "Exported 10 records" in result.output
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    result = cli("import", str(out), "--store", copy)
    assert result.exit_code == 0, result.output
    assert "Imported 10 new records" in result.output
    original, again = history(ledger), history(copy)
    assert [record_to_dict(r) for r in again] == [record_to_dict(r) for r in original]
    assert again == original  # ids, microsecond timestamps, exact cost units, rules, attribution


@pytest.mark.parametrize("fmt", FORMATS)
def test_importing_the_same_file_twice_does_not_double_count(
    fmt: str, ledger: str, tmp_path: Path, cli: Any
) -> None:
    out = tmp_path / f"usage.{fmt}"
    assert cli("export", "--store", ledger, "-o", str(out)).exit_code == 0
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    assert cli("import", str(out), "--store", copy).exit_code == 0
    second = cli("import", str(out), "--store", copy)
    assert second.exit_code == 0
    assert "Imported 0 new records" in second.output and "10 already in the ledger" in second.output
    tracker = tt.Tracker(copy)
    totals = tracker.totals()
    tracker.store.close()  # type: ignore[attr-defined]
    assert totals.calls == 10
    assert totals.input_tokens == 1_000 + 2_000 + 3_000 + 4_000 + 5_000 + 10_000 + 700 + 1_200 + 50 + 60


def test_import_into_a_ledger_that_already_has_some_of_the_records_adds_only_the_rest(
    ledger: str, tmp_path: Path, cli: Any
) -> None:
    out = tmp_path / "all.jsonl"
    assert cli("export", "--store", ledger, "-o", str(out)).exit_code == 0
    partial = tmp_path / "first.jsonl"
    first_hour = (T0 + timedelta(minutes=59)).isoformat()
    assert cli("export", "--store", ledger, "-o", str(partial), "--until", first_hour).exit_code == 0
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    assert "Imported 5 new records" in cli("import", str(partial), "--store", copy).output
    result = cli("import", str(out), "--store", copy, "--chunk-size", "3")
    assert "Imported 5 new records" in result.output and "5 already in the ledger" in result.output
    assert history(copy) == history(ledger)


def test_hostile_names_round_trip_verbatim_through_every_format(
    ledger: str, tmp_path: Path, cli: Any
) -> None:
    for fmt in FORMATS:
        out = tmp_path / f"hostile.{fmt}"
        assert cli("export", "--store", ledger, "-o", str(out)).exit_code == 0
        copy = f"sqlite:///{tmp_path / f'{fmt}.db'}"
        assert cli("import", str(out), "--store", copy).exit_code == 0
        records = history(copy)
        agents = {r.agent for r in records}
        assert HOSTILE["sql"] in agents and HOSTILE["emoji"] in agents, fmt
        emoji = next(r for r in records if r.agent == HOSTILE["emoji"])
        assert emoji.session == HOSTILE["long"] and len(emoji.session) == 10_240
        assert emoji.tags == tuple(sorted((HOSTILE["markup"], "t2")))


def test_export_filters_by_time_and_field(ledger: str, tmp_path: Path, cli: Any) -> None:
    out = tmp_path / "writer.jsonl"
    result = cli(
        "export",
        "--store",
        ledger,
        "-o",
        str(out),
        "--agent",
        "writer",
        "--since",
        (T0 + timedelta(hours=2)).isoformat(),
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["agent"], r["input_tokens"], r["cost"]) for r in rows] == [("writer", 60, "0.00021")]


def test_json_export_is_a_document_load_reads_with_totals_of_the_selection(
    ledger: str, tmp_path: Path, cli: Any
) -> None:
    out = tmp_path / "usage.json"
    assert cli("export", "--store", ledger, "-o", str(out), "--provider", "openai").exit_code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["format"] == "tokentrail" and data["selection"]["provider"] == ["openai"]
    assert data["totals"]["calls"] == 9 and data["totals"]["unpriced_calls"] == 1
    assert Decimal(data["totals"]["cost"]) == sum(Decimal(r["cost"]) for r in data["records"] if r["cost"])
    loaded = export.load(out)
    assert len(loaded.history()) == 9


def test_export_to_stdout_writes_jsonl(ledger: str, cli: Any) -> None:
    result = cli("export", "--store", ledger, "-o", "-", "--model", "gpt-4o-mini")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert [json.loads(line)["output_tokens"] for line in lines] == [1_000]


def test_memory_store_exports_nothing_and_imports_into_a_fresh_memory_ledger(
    ledger: str, tmp_path: Path, cli: Any
) -> None:
    out = tmp_path / "empty.csv"
    result = cli("export", "--store", "memory", "-o", str(out))
    assert result.exit_code == 0 and "Exported 0 records" in result.output
    assert out.read_text(encoding="utf-8").splitlines() == [",".join(export.CSV_COLUMNS)]
    full = tmp_path / "full.csv"
    assert cli("export", "--store", ledger, "-o", str(full)).exit_code == 0
    assert "Imported 10 new records" in cli("import", str(full), "--store", "memory").output


# -- pages ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_pages_cover_history_exactly_and_stay_within_the_page_size(store: str, tmp_path: Path) -> None:
    tracker = tt.Tracker(None if store == "memory" else f"sqlite:///{tmp_path / 'p.db'}")
    record_sample(tracker)
    for i in range(40):  # a busy hour that must be split by time
        tracker.record(tt.Usage(10 + i, 1), "gpt-4o", "openai", at=T0 + timedelta(hours=5, seconds=i))
    for _ in range(3):  # three records at the very same microsecond
        tracker.record(tt.Usage(1, 1), "gpt-4o", "openai", at=T0 + timedelta(hours=7))
    flush = getattr(tracker.store, "flush", None)
    if flush:
        flush()
    pages = list(iter_record_pages(tracker, page_size=4))
    assert [r.id for page in pages for r in page] == [r.id for r in tracker.history()]
    assert all(1 <= len(page) <= 4 for page in pages)
    window = {"since": T0 + timedelta(minutes=2), "until": T0 + timedelta(hours=5, seconds=20)}
    in_window = [r.id for page in iter_record_pages(tracker, page_size=3, **window) for r in page]
    assert in_window == [r.id for r in tracker.history(**window)] and len(in_window) == 3 + 2 + 3 + 20


def test_page_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="page_size"):
        list(iter_record_pages(tt.Tracker(), page_size=0))


# -- bad input ------------------------------------------------------------------------------------------------


def test_export_of_a_missing_ledger_fails_clearly(tmp_path: Path, cli: Any) -> None:
    result = cli("export", "--store", f"sqlite:///{tmp_path / 'nope.db'}", "-o", str(tmp_path / "x.json"))
    assert result.exit_code == 1 and "No ledger" in result.output
    assert not (tmp_path / "x.json").exists()


def test_bad_store_url_fails_with_exit_1(tmp_path: Path, cli: Any) -> None:
    for command in (["export", "-o", str(tmp_path / "x.json")], ["import", __file__], ["tail"]):
        result = cli(*command, "--store", "mongodb://nowhere")
        assert result.exit_code == 1, command
        assert "unknown store" in result.output


def test_unknown_formats_are_usage_errors(ledger: str, tmp_path: Path, cli: Any) -> None:
    assert cli("export", "--store", ledger, "-o", str(tmp_path / "x.xml")).exit_code == 2
    assert cli("export", "--store", ledger, "-o", str(tmp_path / "x.json"), "-f", "yaml").exit_code == 2
    assert cli("import", __file__, "--store", ledger, "--format", "yaml").exit_code == 2


def test_import_of_a_missing_file_fails_with_exit_1(ledger: str, tmp_path: Path, cli: Any) -> None:
    result = cli("import", str(tmp_path / "missing.json"), "--store", ledger)
    assert result.exit_code == 1 and "no file" in result.output


def test_import_of_a_malformed_record_names_the_line_and_keeps_what_came_before(
    ledger: str, tmp_path: Path, cli: Any
) -> None:
    out = tmp_path / "usage.jsonl"
    assert cli("export", "--store", ledger, "-o", str(out)).exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[3])
    broken["input_tokens"] = -5
    lines[3] = json.dumps(broken)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    result = cli("import", str(out), "--store", copy, "--chunk-size", "2")
    assert result.exit_code == 1
    assert "line 4" in result.output and "2 records were imported before it" in result.output


def test_import_of_an_unrecognised_json_file_fails_with_exit_1(tmp_path: Path, ledger: str, cli: Any) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text('{"hello": "world"}', encoding="utf-8")
    result = cli("import", str(odd), "--store", ledger)
    assert result.exit_code == 1 and "cannot tell its format" in result.output
    result = cli("import", str(odd), "--store", ledger, "--format", "tokentrail-json")
    assert result.exit_code == 1 and "not a tokentrail JSON export" in result.output


def test_parquet_without_pyarrow_says_how_to_get_it(
    ledger: str, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    result = cli("export", "--store", ledger, "-o", str(tmp_path / "x.parquet"))
    assert result.exit_code == 1 and "tokentrail[parquet]" in result.output


def test_a_failed_export_leaves_no_file(ledger: str, tmp_path: Path, cli: Any) -> None:
    out = tmp_path / "usage.json"
    result = cli(
        "export", "--store", ledger, "-o", str(out), "--since", "2025-08-01T12:00:00", "--agent", "a"
    )
    assert result.exit_code == 0 and json.loads(out.read_text(encoding="utf-8"))["records"] == []
    missing_dir = tmp_path / "no" / "such" / "dir.json"
    result = cli("export", "--store", ledger, "-o", str(missing_dir))
    assert result.exit_code == 1 and "no directory" in result.output
    assert not list(tmp_path.glob(".*.partial"))


def test_progress_bar_can_be_forced_on(ledger: str, tmp_path: Path, cli: Any) -> None:
    result = cli("export", "--store", ledger, "-o", str(tmp_path / "p.jsonl"), "--progress")
    assert result.exit_code == 0 and "10/10" in result.stderr


def test_second_ledger_from_the_fixture_has_the_same_figures(tmp_path: Path) -> None:
    url = make_ledger(tmp_path / "again.db")
    records = history(url)
    assert len(records) == 10 and sum(1 for r in records if r.cost is None) == 1


def test_nul_bytes_and_newlines_in_names_round_trip_through_every_format(tmp_path: Path, cli: Any) -> None:
    url = f"sqlite:///{tmp_path / 'nul.db'}"
    tracker = tt.Tracker(url)
    tracker.record(tt.Usage(10, 1), "gpt-4o", "openai", agent="a\x00b", tool='line\nbreak,"quoted"', at=T0)
    tracker.store.close()  # type: ignore[attr-defined]
    for fmt in FORMATS:
        out = tmp_path / f"nul.{fmt}"
        assert cli("export", "--store", url, "-o", str(out)).exit_code == 0
        copy = f"sqlite:///{tmp_path / f'nul-{fmt}.db'}"
        assert cli("import", str(out), "--store", copy).exit_code == 0, fmt
        (record,) = history(copy)
        assert (record.agent, record.tool) == ("a\x00b", 'line\nbreak,"quoted"'), fmt
