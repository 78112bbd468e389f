"""The terminal report reads well at any width: names are never broken mid-word (shortened with "…" on
their own line), numbers are never cut and are right-aligned, low-value columns go first, and the
figures shown are the JSON report's figures."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich import box
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

import tokentrail as tt
from tokentrail import cli
from tokentrail.cli import app
from tokentrail.reports.fit import COMFORT, MIN_NAME, Fitted
from tokentrail.tracker import Tracker

runner = CliRunner()
T0 = datetime(2025, 6, 1, 10, 0, tzinfo=timezone.utc)
AGENTS = ("researcher", "writer", "reviewer-of-very-long-agent-names")
MODELS = ("gpt-4o-mini", "claude-sonnet-4-5", "acme-private-model")


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    tracker = Tracker(store=url)
    for i, (agent, model) in enumerate(zip(AGENTS, MODELS, strict=True)):
        usage = tt.Usage(input_tokens=1000 * (i + 1) + 234, output_tokens=56 * (i + 1))
        tracker.record(usage, model, agent=agent, at=T0)
    tracker.store.close()  # type: ignore[attr-defined]
    return url


def _report(ledger: str, width: int, monkeypatch: pytest.MonkeyPatch, *extra: str) -> str:
    monkeypatch.setattr(cli, "console", Console(width=width, file=io.StringIO(), color_system=None))
    result = runner.invoke(app, ["report", "--store", ledger, "--by", "agent,model", *extra])
    assert result.exit_code == 0, result.output
    shown: str = cli.console.file.getvalue()  # type: ignore[attr-defined]
    return result.output + shown


def _table_lines(text: str) -> list[str]:
    """The rows of the "By agent, model" table (below its rule, up to the blank line after it)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("By agent, model"))
    rule = next(i for i in range(start, len(lines)) if "━" in lines[i])
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        rows.append(line)
    return rows


@pytest.mark.parametrize("width", [60, 72, 80, 100, 140])
def test_names_never_break_and_numbers_match_the_json(
    ledger: str, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _report(ledger, width, monkeypatch)
    data = json.loads(_report(ledger, 400, monkeypatch, "--format", "json"))
    by_agent = {row["agent"]: row for row in data["rows"]}
    rows = _table_lines(text)
    assert len(rows) == len(AGENTS), text  # one line per group: nothing wrapped onto a second line
    for line in text.splitlines():
        assert len(line.rstrip()) <= width, line
    for line in rows:
        cells = re.split(r"\s{2,}", line.strip())
        agent, model = cells[0], cells[1]
        full = next(a for a in AGENTS if a == agent or (agent.endswith("…") and a.startswith(agent[:-1])))
        assert model in MODELS or (model.endswith("…") and any(m.startswith(model[:-1]) for m in MODELS))
        expected = by_agent[full]
        # the cost, and the calls and tokens when shown, are exactly the JSON figures
        unpriced = expected["unpriced_calls"] == expected["calls"]
        assert ("unpriced" if unpriced else f"${float(expected['cost']):.6f}") in cells
        assert f"{expected['calls']:,}" in cells
        if width >= 100:
            assert f"{expected['input_tokens']:,}" in cells
            assert f"{expected['output_tokens']:,}" in cells
        if width >= 140:
            assert agent == full and model in MODELS  # wide enough: nothing shortened


def test_at_80_columns_the_demo_names_are_whole(ledger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _report(ledger, 80, monkeypatch)
    rows = _table_lines(text)
    assert any(line.strip().startswith("researcher ") for line in rows)
    assert any("claude-sonnet-4-5" in line for line in rows)
    assert "Cost" in text


def test_numbers_are_right_aligned(ledger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _table_lines(_report(ledger, 120, monkeypatch))
    ends = {len(line.rstrip()) for line in rows}
    assert len(ends) == 1  # the last column's figures end in the same column


names = st.text(alphabet="abcdefghij-_ .0123456789", min_size=1, max_size=60).map(str.strip).filter(bool)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(names, names, st.integers(0, 10**9)), min_size=1, max_size=6),
    width=st.integers(50, 200),
)
def test_any_names_any_width(rows: list[tuple[str, str, int]], width: int) -> None:
    table = Table(box=box.SIMPLE_HEAVY)
    table.add_column("Agent")
    table.add_column("Model")
    table.add_column("Tokens", justify="right")
    table.add_column("Cost", justify="right")
    for agent, model, tokens in rows:
        table.add_row(agent, model, f"{tokens:,}", f"${tokens / 10**6:.6f}")
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(Fitted(table, drop=("Tokens",)))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    rule = next(i for i, line in enumerate(lines) if "━" in line)
    body = [line for line in lines[rule + 1 :] if line.strip()]
    assert len(body) == len(rows)  # one line per row
    for line, (agent, model, tokens) in zip(body, rows, strict=True):
        assert len(line) <= width
        assert line.rstrip().endswith(f"${tokens / 10**6:.6f}")  # the cost, whole, right-aligned
        shown = line[2:]
        for name in (agent, model):
            # the name is shown whole, or its first cells and "…", never fewer than MIN_NAME cells
            cut = shown.find("…")
            if shown.startswith(name):
                shown = shown[len(name) :].lstrip()
            else:
                assert cut >= MIN_NAME - 1 and name.startswith(shown[:cut].rstrip()), (name, line)
                shown = shown[cut + 1 :].lstrip()


def test_columns_go_before_names_are_shortened_below_comfort() -> None:
    table = Table(box=box.SIMPLE_HEAVY)
    table.add_column("Agent")
    table.add_column("Share", justify="right")
    table.add_column("Cost", justify="right")
    table.add_row("a" * 40, "12.5%", "$1.000000")
    console = Console(width=COMFORT + 20, file=io.StringIO(), color_system=None)
    console.print(Fitted(table, drop=("Share",)))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Share" not in text and "$1.000000" in text
    assert "a" * (COMFORT - 1) + "…" in text
