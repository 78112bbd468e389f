"""`tracker.context(...)`: a context monitor fed by the tracker's own records."""

from __future__ import annotations

import logging

import pytest

import tokentrail as tt
from tokentrail.tokens.context import ContextWarning
from tokentrail.tokens.limits import context_window

WINDOW = context_window("gpt-4o")


def test_each_recorded_call_is_a_turn_of_its_session() -> None:
    tracker = tt.Tracker()
    monitor = tracker.context(thresholds=(0.5, 0.9))
    with tt.scope(session="s1"):
        tracker.record(tt.Usage(input_tokens=1_000, output_tokens=200), "gpt-4o")
        tracker.record(tt.Usage(input_tokens=1_300, output_tokens=100, reasoning_tokens=40), "gpt-4o")
    tracker.record(tt.Usage(input_tokens=50, output_tokens=5), "gpt-4o", session="s2")
    tracker.record(tt.Usage(input_tokens=50, output_tokens=5), "gpt-4o")  # no session: not remembered
    state = monitor.conversation("s1")
    assert state is not None
    assert (state.calls, state.last_tokens) == (2, 1_300 + 100 - 40)
    assert state.growth_per_call == (1_360 - 1_200) / 1
    assert state.peak_utilization == pytest.approx(1_360 / WINDOW)
    assert set(monitor.conversations()) == {"s1", "s2"}


def test_a_threshold_warns_once_per_conversation(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[ContextWarning] = []
    tracker = tt.Tracker()
    tracker.context("agent", thresholds=(0.5,), on_warning=seen.append)
    big = tt.Usage(input_tokens=WINDOW // 2 + 10, output_tokens=0)
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        for _ in range(3):
            tracker.record(big, "gpt-4o", agent="planner")
        tracker.record(big, "gpt-4o", agent="coder")
    assert [(w.conversation, w.threshold, w.first_time) for w in seen] == [
        ("planner", 0.5, True),
        ("coder", 0.5, True),
    ]
    logged = [r.getMessage() for r in caplog.records if "-token window used" in r.getMessage()]
    assert len(logged) == 2
    assert "'planner'" in logged[0] and "'coder'" in logged[1]


def test_the_monitor_is_shared_by_the_tree_and_configured_once() -> None:
    tracker = tt.Tracker()
    monitor = tracker.context(thresholds=(0.75,))
    assert tracker.context() is monitor
    assert tracker.child("team").context() is monitor
    tracker.child("team").record(tt.Usage(100, 10), "gpt-4o", session="x")
    assert monitor.conversation("x") is not None
    with pytest.raises(ValueError, match="already exists"):
        tracker.context(thresholds=(0.5,))
    with pytest.raises(ValueError, match="by must be one of"):
        tracker.context("model")


def test_unknown_usage_and_model_less_calls_are_not_observed() -> None:
    tracker = tt.Tracker()
    monitor = tracker.context()
    tracker.record(tt.Usage.unknown("no usage in the response"), "gpt-4o", session="s")
    tracker.record(tt.Usage(100, 10), None, session="s")
    assert monitor.conversation("s") is None


def test_a_failing_warning_callback_does_not_break_record() -> None:
    def explode(warning: ContextWarning) -> None:
        raise RuntimeError("callback bug")

    tracker = tt.Tracker()
    tracker.context(thresholds=(0.1,), on_warning=explode)
    record = tracker.record(tt.Usage(WINDOW // 5, 1), "gpt-4o", session="s")
    assert record.priced and tracker.sink_errors == 1
    assert tracker.totals().calls == 1
