"""Properties: summaries equal the sum of their records; a parent equals the sum of its children."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokentrail as tt
from tokentrail._types import TOKEN_FIELDS
from tokentrail.tracker import Tracker

MODELS = st.sampled_from(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.0-flash", "no-such-model"])
NAMES = st.sampled_from(["a", "b", "c"])
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


@st.composite
def usages(draw: st.DrawFn) -> tt.Usage:
    input_tokens = draw(st.integers(0, 50_000))
    output_tokens = draw(st.integers(0, 20_000))
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    audio = draw(st.sampled_from([0, 0, 0, min(7, input_tokens - cache_read - cache_write)]))
    return tt.Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=draw(st.integers(0, output_tokens)),
        input_audio_tokens=audio,
        requests=draw(st.sampled_from([1, 1, 1, 2])),
    )


calls = st.lists(
    st.tuples(
        usages(),
        MODELS,
        st.one_of(st.none(), NAMES),  # agent
        st.lists(NAMES, max_size=2),  # tags
        st.integers(0, 72 * 60),  # minutes after T0
        st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False)),  # duration
    ),
    max_size=40,
)


def record_all(
    tracker: Tracker, drawn: list[tuple[tt.Usage, str, str | None, list[str], int, float | None]]
) -> list[tt.Record]:
    return [
        tracker.record(
            usage, model, agent=agent, tags=tags, at=T0 + timedelta(minutes=minutes), duration_ms=duration
        )
        for usage, model, agent, tags, minutes, duration in drawn
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls, st.sampled_from(["agent", "model", "tag", "day", "hour", "provider"]))
def test_summary_totals_equal_the_sum_of_the_records(drawn: list, by: str) -> None:  # type: ignore[type-arg]
    tracker = Tracker()
    records = record_all(tracker, drawn)
    totals = tracker.totals()
    assert totals.calls == len(records)
    assert totals.cost_units == sum(r.cost_units or 0 for r in records)
    assert totals.unpriced_calls == sum(not r.priced for r in records)
    for name in TOKEN_FIELDS:
        assert getattr(totals.usage, name) == sum(getattr(r.usage, name) for r in records)
    rows = tracker.summary(by=(by,))
    if by != "tag":  # a record with several tags counts once under each
        assert sum(row.calls for row in rows) == totals.calls
        assert sum(row.cost_units for row in rows) == totals.cost_units
        assert sum(row.usage.input_tokens for row in rows) == totals.usage.input_tokens


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls, st.integers(0, 72 * 60), st.integers(0, 72 * 60))
def test_a_time_window_equals_the_records_inside_it(drawn: list, start: int, length: int) -> None:  # type: ignore[type-arg]
    tracker = Tracker()
    records = record_all(tracker, drawn)
    since, until = (
        T0 + timedelta(minutes=start, seconds=17),
        T0 + timedelta(minutes=start + length, seconds=17),
    )
    inside = [r for r in records if since <= r.timestamp < until]
    window = tracker.totals(since=since, until=until)
    assert window.calls == len(inside)
    assert window.cost_units == sum(r.cost_units or 0 for r in inside)
    assert window.usage.output_tokens == sum(r.usage.output_tokens for r in inside)
    assert sorted(r.id for r in tracker.history(since=since, until=until)) == sorted(r.id for r in inside)


tree_calls = st.lists(st.tuples(st.lists(NAMES, max_size=3), usages(), MODELS), max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree_calls)
def test_every_parent_equals_itself_plus_the_sum_of_its_children(drawn: list) -> None:  # type: ignore[type-arg]
    root = Tracker()
    for path, usage, model in drawn:
        node = root
        for name in path:
            node = node.child(name)
        node.record(usage, model)

    def check(node: Tracker) -> None:
        whole = node.totals()
        parts = [node.totals(include_children=False)] + [
            node.child(name).totals() for name in node.children()
        ]
        assert whole.calls == sum(part.calls for part in parts)
        assert whole.cost_units == sum(part.cost_units for part in parts)
        assert whole.unpriced_calls == sum(part.unpriced_calls for part in parts)
        for name in TOKEN_FIELDS:
            assert getattr(whole.usage, name) == sum(getattr(part.usage, name) for part in parts)
        for name in node.children():
            check(node.child(name))

    check(root)
    assert root.totals().calls == len(drawn)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls, NAMES)
def test_reset_removes_exactly_the_selected_records(drawn: list, agent: str) -> None:  # type: ignore[type-arg]
    tracker = Tracker()
    records = record_all(tracker, drawn)
    removed = tracker.reset(agent=agent)
    kept = [r for r in records if r.agent != agent]
    assert removed == len(records) - len(kept)
    assert tracker.totals().cost_units == sum(r.cost_units or 0 for r in kept)
    assert sorted(r.id for r in tracker.history()) == sorted(r.id for r in kept)
