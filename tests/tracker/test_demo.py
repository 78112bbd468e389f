"""The demo scenario runs through the public API and prints the report."""

from __future__ import annotations

import pytest

from tokentrail import demo
from tokentrail.tracker import Tracker


def test_the_scenario_attributes_every_call() -> None:
    tracker = Tracker()
    demo.run_scenario(tracker)
    totals = tracker.totals()
    assert totals.calls == 13
    assert totals.unpriced_calls == 1  # the in-house reviewer model has no price
    assert {row.group["agent"] for row in tracker.summary(by="agent")} == {"researcher", "writer", "reviewer"}
    assert {row.group["session"] for row in tracker.summary(by="session")} == {"demo-session-1"}
    tools = {row.group["tool"]: row.calls for row in tracker.summary(by="tool")}
    assert tools["web_search"] == 3  # searched in parallel threads, still attributed
    assert tools["draft_section"] == 3  # drafted in asyncio tasks, still attributed
    assert totals.provider_cost_calls == 1


def test_main_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    demo.main()
    out = capsys.readouterr().out
    assert "By agent" in out and "researcher" in out and "acme-reviewer-7b" in out
