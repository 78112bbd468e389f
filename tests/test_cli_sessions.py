"""`tokentrail sessions`, `tokentrail session ID` and `tokentrail report --watch` on a real SQLite ledger.

The JSON figures must equal the dashboard API's; the tables must keep names whole at 80 and 60 columns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import tokentrail as tt
from tokentrail.cli import app
from tokentrail.server import create_app

RECENT = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
OLD = RECENT - timedelta(days=5)


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = tt.Tracker(store=url)
    with tt.scope(session="research-session-0001"), tt.scope(agent="researcher"):
        writer.record(tt.Usage(4000, 500), model="gpt-4o", duration_ms=900.0, at=RECENT)
        with tt.scope(agent="summarizer"):
            writer.record(
                tt.Usage(800, 200), model="gpt-4o-mini", duration_ms=300.0, at=RECENT + timedelta(seconds=4)
            )
    writer.record(tt.Usage(10, 10), model="my-local-model", session="old-session", agent="x", at=OLD)
    writer.store.close()  # type: ignore[attr-defined]
    return url


def run(*args: str, columns: int = 100) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_sessions_json_equals_the_api(ledger: str) -> None:
    printed = json.loads(run("sessions", "--store", ledger, "--format", "json"))
    with TestClient(create_app(ledger)) as client:
        api = client.get("/api/sessions").json()
    assert printed["sessions"] == api["sessions"] and printed["total"] == 2
    assert [row["session"] for row in printed["sessions"]] == ["research-session-0001", "old-session"]


def test_sessions_since_one_day_leaves_older_sessions_out(ledger: str) -> None:
    printed = json.loads(run("sessions", "--store", ledger, "--since", "1d", "--format", "json"))
    assert [row["session"] for row in printed["sessions"]] == ["research-session-0001"]


@pytest.mark.parametrize("columns", [80, 60])
def test_the_sessions_table_keeps_names_whole_or_ellipsized(ledger: str, columns: int) -> None:
    output = run("sessions", "--store", ledger, columns=columns)
    assert all(len(line) <= columns for line in output.splitlines())
    cells = [line.split("│")[1].strip() for line in output.splitlines() if "research-" in line]
    assert len(cells) == 1  # one line: the name never wraps onto a second one
    name = cells[0]
    assert name == "research-session-0001" or (
        name.endswith("…") and "research-session-0001".startswith(name[:-1])
    ), name
    assert "unpriced" in output  # old-session's only call is unpriced: never shown as $0


def test_session_prints_the_tree_with_exact_costs(ledger: str) -> None:
    output = run("session", "research-session-0001", "--store", ledger, "--calls", columns=100)
    top = tt.price(tt.Usage(4000, 500), "gpt-4o").total
    below = tt.price(tt.Usage(800, 200), "gpt-4o-mini").total
    assert f"${top + below:,.6f}" in output
    lines = output.splitlines()
    researcher = next(line for line in lines if "└ researcher" in line)
    summarizer = next(line for line in lines if "└ summarizer" in line)
    assert f"${below:,.6f}" in summarizer and f"{below * 100 / (top + below):.2f}%" in summarizer
    assert f"${top + below:,.6f}" in researcher
    assert "Calls in time order" in output


def test_session_json_equals_the_api(ledger: str) -> None:
    printed = json.loads(run("session", "research-session-0001", "--store", ledger, "--format", "json"))
    with TestClient(create_app(ledger)) as client:
        api = client.get("/api/sessions/research-session-0001").json()
    assert printed["tree"] == api["tree"] and printed["timeline"] == api["timeline"]
    assert Decimal(printed["cost_usd"]) == Decimal(api["cost_usd"])


def test_an_unknown_session_exits_1(ledger: str) -> None:
    result = CliRunner().invoke(app, ["session", "nobody", "--store", ledger])
    assert result.exit_code == 1 and "nobody" in result.output


def test_report_watch_redraws_as_calls_arrive(ledger: str) -> None:
    command = [sys.executable, "-c", "from tokentrail.cli import main; main()", "report", "--store", ledger]
    command += ["--by", "session", "--watch", "0.3s", "--for", "600s"]  # stopped by the test
    env = {**os.environ, "COLUMNS": "120"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    assert process.stdout is not None
    seen: list[str] = []
    try:
        while not any("report at" in line for line in seen):
            line = process.stdout.readline()
            assert line, "".join(seen)  # the watcher exited before its first report
            seen.append(line)
        writer = tt.Tracker(store=ledger)
        writer.record(tt.Usage(1, 1), model="gpt-4o", session="arrived-while-watching")
        writer.store.close()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 120
        while not any("arrived-while-watching" in line for line in seen):
            line = process.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(seen)
            seen.append(line)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert sum("report at" in line for line in seen) >= 2
