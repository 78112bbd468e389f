"""ContextMonitor: utilization, threshold warnings per conversation, computed recommendations."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tokentrail import Usage, price
from tokentrail.tokens import ContextMonitor, clear_model_limits, count, count_tokens, set_model_limits

WORD = "alpha "  # " alpha" is one o200k token


@pytest.fixture(autouse=True)
def no_user_limits() -> Iterator[None]:
    clear_model_limits()
    yield
    clear_model_limits()


def _text_of(tokens: int) -> str:
    text = "alpha" + " alpha" * (tokens - 1)
    assert count_tokens(text, "gpt-4o") == tokens
    return text


def test_utilization_of_one_call() -> None:
    set_model_limits("gpt-4o", context_window=1000)
    report = ContextMonitor().check(_text_of(500), "gpt-4o")
    assert (report.tokens, report.context_window, report.utilization) == (500, 1000, 0.5)
    assert report.headroom == 500
    assert report.exact
    assert report.warnings == () and report.recommendations == ()


def test_reserved_output_counts_as_used() -> None:
    set_model_limits("gpt-4o", context_window=1000)
    report = ContextMonitor(reserve_output_tokens=300).check(_text_of(500), "gpt-4o")
    assert report.utilization == 0.8
    assert report.headroom == 200
    assert [w.threshold for w in report.warnings] == [0.75]


def test_warnings_at_each_threshold_reached_and_first_time_per_conversation() -> None:
    set_model_limits("gpt-4o", context_window=1000)
    monitor = ContextMonitor()
    first = monitor.check(_text_of(800), "gpt-4o", conversation="session-1")
    assert [(w.threshold, w.first_time) for w in first.warnings] == [(0.75, True)]
    again = monitor.check(_text_of(800), "gpt-4o", conversation="session-1")
    assert [(w.threshold, w.first_time) for w in again.warnings] == [(0.75, False)]
    both = monitor.check(_text_of(950), "gpt-4o", conversation="session-1")
    assert [(w.threshold, w.first_time) for w in both.warnings] == [(0.75, False), (0.9, True)]
    other = monitor.check(_text_of(950), "gpt-4o", conversation="agent-b")
    assert all(w.first_time for w in other.warnings)
    assert "95% of the 1,000-token window" in str(both.warnings[1])


def test_custom_thresholds() -> None:
    set_model_limits("gpt-4o", context_window=1000)
    report = ContextMonitor(thresholds=(0.5,)).check(_text_of(600), "gpt-4o")
    assert [w.threshold for w in report.warnings] == [0.5]


@pytest.mark.parametrize("bad", [(), (0.0,), (1.5,)])
def test_thresholds_must_be_fractions(bad: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        ContextMonitor(thresholds=bad)


def test_unknown_window_gives_no_utilization_and_no_warnings() -> None:
    report = ContextMonitor().check("hello", "my-local-model")
    assert report.context_window is None and report.utilization is None and report.headroom is None
    assert report.warnings == ()
    assert not report.exact


def _conversation() -> list[dict[str, str]]:
    return [
        {"role": "system", "content": _text_of(50)},
        {"role": "user", "content": _text_of(200)},
        {"role": "tool", "content": _text_of(300)},
        {"role": "assistant", "content": _text_of(100)},
        {"role": "user", "content": _text_of(20)},
        {"role": "assistant", "content": _text_of(20)},
        {"role": "user", "content": _text_of(10)},
    ]


def test_summarize_and_drop_recommendations_are_computed_from_the_messages() -> None:
    set_model_limits("gpt-4o", context_window=900)
    messages = _conversation()
    monitor = ContextMonitor(keep_recent_messages=3, summary_ratio=0.1, candidates=[])
    report = monitor.check(messages, "gpt-4o")
    assert report.tokens == count(messages, "gpt-4o").tokens
    assert report.warnings
    by_action = {r.action: r for r in report.recommendations}

    older = messages[1:4]  # not the system prompt, not the 3 most recent
    older_tokens = count(older, "gpt-4o").tokens - 3
    assert older_tokens == 3 * 3 + 200 + 300 + 100 + 3  # overhead + contents + role names
    summarize = by_action["summarize_older_turns"]
    assert summarize.tokens_saved == older_tokens - round(older_tokens * 0.1)
    assert summarize.usd_saved == price(Usage(input_tokens=summarize.tokens_saved), "gpt-4o").total

    drop = by_action["drop_tool_outputs"]
    assert drop.tokens_saved == 3 + 1 + 300
    assert drop.usd_saved == price(Usage(input_tokens=drop.tokens_saved), "gpt-4o").total
    assert drop.usd_saved == Decimal("0.00076")  # 304 tokens at $2.50 per million


def test_model_switch_recommendations_are_priced_per_model() -> None:
    messages = [{"role": "user", "content": _text_of(7000)}]
    monitor = ContextMonitor(candidates=["gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo"])
    report = monitor.check(messages, "gpt-4")  # 8,192-token window in the catalog
    assert report.warnings
    by_action = {r.action: r for r in report.recommendations}
    current = price(Usage(input_tokens=report.tokens), "gpt-4").total

    larger = by_action["switch_to_larger_window"]
    assert larger.target_model == "gpt-4o"  # of the larger windows, nearest in price to gpt-4
    gpt_4o_tokens = count(messages, "gpt-4o").tokens
    assert larger.tokens_saved == report.tokens - gpt_4o_tokens
    assert larger.usd_saved == current - price(Usage(input_tokens=gpt_4o_tokens), "gpt-4o").total

    cheaper = by_action["switch_to_cheaper_model"]
    assert cheaper.target_model == "gpt-4o-mini"
    assert cheaper.usd_saved == current - price(Usage(input_tokens=gpt_4o_tokens), "gpt-4o-mini").total


def test_default_candidates_come_from_the_catalog() -> None:
    messages = [{"role": "user", "content": _text_of(7000)}]
    report = ContextMonitor().check(messages, "gpt-4")
    switches = [r for r in report.recommendations if r.action.startswith("switch_")]
    assert switches
    for recommendation in switches:
        assert recommendation.target_model is not None
        assert recommendation.target_model.startswith(("gpt", "o"))


def test_no_recommendations_below_the_thresholds() -> None:
    set_model_limits("gpt-4o", context_window=100_000)
    assert ContextMonitor().check(_conversation(), "gpt-4o").recommendations == ()


def test_observe_tracks_billed_usage_per_conversation() -> None:
    set_model_limits("gpt-4o", context_window=10_000)
    monitor = ContextMonitor()
    monitor.observe("s", Usage(input_tokens=1000, output_tokens=500, reasoning_tokens=300), "gpt-4o")
    report = monitor.observe("s", Usage(input_tokens=2000, output_tokens=200), "gpt-4o")
    assert report.tokens == 2200 and report.utilization == 0.22
    state = monitor.conversation("s")
    assert state is not None
    assert (state.calls, state.last_tokens, state.growth_per_call) == (2, 2200, 1000)
    assert state.calls_until_full(10_000) == 7
    assert state.peak_utilization == 0.22
    monitor.reset("s")
    assert monitor.conversation("s") is None
