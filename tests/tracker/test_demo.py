"""The demo scenario runs through the real SDKs (against the mock server) and prints the report."""

from __future__ import annotations

from pathlib import Path

import pytest

import tokentrail as tt
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
    records = tracker.history()
    assert all(r.usage.status is tt.UsageStatus.COMPLETE for r in records)
    assert totals.cache_read_tokens > 0  # the shared system prompts hit the cache
    streamed = [r for r in records if "streamed" in r.tags]
    assert {r.model for r in streamed} == {"o3-mini", "claude-sonnet-4-6"}
    assert next(r for r in streamed if r.model == "o3-mini").usage.reasoning_tokens == 96
    assert {r.provider for r in records} == {"openai", "anthropic"}
    assert all(r.cost == tt.price(r.usage, r.model, r.provider).total for r in records if r.priced)


def test_the_sdks_are_left_uninstrumented_afterwards() -> None:
    from openai.resources.chat.completions import Completions

    original = Completions.create
    demo.run_scenario(Tracker())
    assert Completions.create is original


def test_main_prints_the_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    demo.main()
    out = capsys.readouterr().out
    assert "By agent" in out and "researcher" in out and "acme-reviewer-7b" in out
    assert "13 calls" in out
    assert (tmp_path / "demo-cost-by-agent.png").read_bytes().startswith(b"\x89PNG")
