"""`tokentrail tail`: the latest records, and with --follow each new one exactly once."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import tokentrail as tt

from .conftest import HOSTILE, history


def _ids(output: str) -> list[str]:
    return [json.loads(line)["id"] for line in output.splitlines() if line.startswith("{")]


def test_tail_prints_the_latest_records_oldest_first(ledger: str, cli: Any) -> None:
    result = cli("tail", "--store", ledger, "-n", "3", "--format", "jsonl")
    assert result.exit_code == 0
    assert _ids(result.stdout) == [f"{r.id:032x}" for r in history(ledger)[-3:]]


def test_tail_filters_like_report(ledger: str, cli: Any) -> None:
    result = cli("tail", "--store", ledger, "-n", "50", "--format", "jsonl", "--agent", "writer")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["agent"], r["input_tokens"]) for r in rows] == [("writer", 10_000), ("writer", 60)]


def test_text_lines_show_names_verbatim_and_control_characters_escaped(tmp_path: Path, cli: Any) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    tracker = tt.Tracker(url)
    tracker.record(tt.Usage(10, 1), "gpt-4o", "openai", agent=HOSTILE["sql"])
    tracker.record(tt.Usage(10, 1), "gpt-4o", "openai", agent=HOSTILE["emoji"])
    tracker.record(tt.Usage(10, 1), "gpt-4o", "openai", agent="two\nlines\x00")
    tracker.store.close()  # type: ignore[attr-defined]
    lines = cli("tail", "--store", url).stdout.splitlines()
    assert len(lines) == 3
    assert f"agent={HOSTILE['sql']}  model=gpt-4o" in lines[0]
    assert f"agent={HOSTILE['emoji']}  " in lines[1]
    assert "agent=two\\nlines\\x00  " in lines[2]
    assert "cost=$0.000035" in lines[0]


def test_jsonl_keeps_hostile_values_verbatim(ledger: str, cli: Any) -> None:
    rows = [
        json.loads(line)
        for line in cli("tail", "--store", ledger, "-n", "10", "-f", "jsonl").stdout.splitlines()
    ]
    by_agent = {row["agent"]: row for row in rows}
    assert by_agent[HOSTILE["emoji"]]["session"] == HOSTILE["long"]
    assert HOSTILE["markup"] in by_agent[HOSTILE["emoji"]]["tags"] and HOSTILE["sql"] in by_agent


def test_follow_prints_every_new_record_once_even_when_writers_land_late(tmp_path: Path, cli: Any) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    seed = tt.Tracker(url)
    before = [seed.record(tt.Usage(1, 1), "gpt-4o", "openai", agent="before") for _ in range(3)]
    seed.store.close()  # type: ignore[attr-defined]
    written: list[str] = []

    def writer() -> None:
        tracker = tt.Tracker(url + "?durable=1")  # another connection, committing each record
        time.sleep(0.3)
        for i in range(30):
            # every third record carries a time 5 s in the past: it lands "late"
            at = datetime.now(timezone.utc) - timedelta(seconds=5 if i % 3 == 0 else 0)
            written.append(
                f"{tracker.record(tt.Usage(i + 1, 1), 'gpt-4o', 'openai', at=at, agent='live').id:032x}"
            )
            time.sleep(0.02)
        tracker.store.close()  # type: ignore[attr-defined]

    thread = threading.Thread(target=writer)
    thread.start()
    result = cli(
        "tail", "--store", url, "-n", "2", "--follow", "--for", "2.5s", "--interval", "0.1s", "-f", "jsonl"
    )
    thread.join()
    assert result.exit_code == 0
    printed = _ids(result.stdout)
    assert printed[:2] == [f"{r.id:032x}" for r in before[-2:]]
    assert len(printed) == len(set(printed))  # no duplicates
    assert sorted(printed[2:]) == sorted(written) and len(written) == 30  # no misses


def test_follow_stops_after_the_given_duration_with_nothing_new(ledger: str, cli: Any) -> None:
    started = time.monotonic()
    result = cli("tail", "--store", ledger, "-n", "0", "--follow", "--for", "300ms", "--interval", "50ms")
    assert result.exit_code == 0 and result.stdout == ""
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("option", ["--for", "--interval", "--lookback"])
def test_bad_durations_are_usage_errors(ledger: str, cli: Any, option: str) -> None:
    result = cli("tail", "--store", ledger, "--follow", option, "soon")
    assert result.exit_code == 2 and "duration" in result.output


def test_tail_of_a_missing_ledger_fails_with_exit_1(tmp_path: Path, cli: Any) -> None:
    result = cli("tail", "--store", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.exit_code == 1 and "No ledger" in result.output
