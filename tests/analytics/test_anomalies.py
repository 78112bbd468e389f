"""Anomaly detection on synthetic hourly series: a spike is found, a slow trend and noise are not."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tokentrail as tt
from tokentrail.analytics import detect_anomalies
from tokentrail.analytics._stats import SCALE, SortedWindow, robust_z
from tokentrail.events import AnomalyEvent, Event, EventBus
from tokentrail.stores.memory import MemoryStore
from tokentrail.tracker import Tracker

H0 = datetime(2025, 6, 1, tzinfo=timezone.utc)


def flat_tracker(store: object = None) -> Tracker:
    catalog = tt.Catalog.from_snapshot()
    catalog.set_price("flat", input="1", output="0")  # $1 per million input tokens
    return Tracker(store=store or MemoryStore(), catalog=catalog)  # type: ignore[arg-type]


def calls(tracker: Tracker, hour: int, count: int, millions: int = 1, agent: str = "a") -> None:
    for _ in range(count):
        tracker.record(
            tt.Usage(input_tokens=millions * 1_000_000), "flat", agent=agent, at=H0 + timedelta(hours=hour)
        )


NOISE = [2, 3, 2, 4, 3, 2, 3, 3, 2, 4]


def test_a_spike_hour_is_found_and_published(make_tracker: Callable[[], Tracker]) -> None:
    tracker = flat_tracker(make_tracker().store)
    for hour in range(48):
        calls(tracker, hour, NOISE[hour % len(NOISE)])
    calls(tracker, 48, 30)
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(got.append, kinds="anomaly")
    found = detect_anomalies(
        tracker, since=H0 + timedelta(hours=48), until=H0 + timedelta(hours=49), publish_to=bus
    )
    assert bus.flush(5)
    bus.close()
    [spike] = found  # cost per call did not change: only the hour's cost is anomalous
    assert spike.metric == "cost_per_hour" and spike.period == H0 + timedelta(hours=48)
    assert spike.value == 30 and spike.baseline_median == 3 and spike.baseline_size == 48
    baseline = [NOISE[h % len(NOISE)] for h in range(48)]
    from fractions import Fraction

    expected, _ = robust_z(Fraction(30), [Fraction(b) for b in baseline])
    assert spike.score == pytest.approx(expected) and spike.score > 3.5
    [event] = got
    assert isinstance(event, AnomalyEvent) and event.value == Decimal(30) and event.group == {}


def test_the_same_hours_without_the_spike_are_quiet() -> None:
    tracker = flat_tracker()
    for hour in range(49):
        calls(tracker, hour, NOISE[hour % len(NOISE)])
    assert detect_anomalies(tracker, since=H0, until=H0 + timedelta(hours=49)) == []


def test_a_slow_trend_is_not_flagged() -> None:
    tracker = flat_tracker()
    for hour in range(72):
        calls(tracker, hour, 1 + hour // 6)  # grows from 1 to 12 calls an hour
    assert detect_anomalies(tracker, since=H0, until=H0 + timedelta(hours=72)) == []


def test_cost_per_call_spike_with_a_normal_call_count() -> None:
    tracker = flat_tracker()
    for hour in range(30):
        calls(tracker, hour, 3, millions=1 + hour % 2)
    calls(tracker, 30, 3, millions=20)  # same number of calls, each 20 times dearer
    found = detect_anomalies(tracker, since=H0 + timedelta(hours=30), until=H0 + timedelta(hours=31))
    assert {a.metric for a in found} == {"cost_per_hour", "cost_per_call"}
    per_call = next(a for a in found if a.metric == "cost_per_call")
    assert per_call.value == 20 and per_call.baseline_median == Decimal("1.5")


def test_short_history_is_not_judged() -> None:
    tracker = flat_tracker()
    for hour in range(10):
        calls(tracker, hour, 2)
    calls(tracker, 10, 50)
    window = {"since": H0 + timedelta(hours=10), "until": H0 + timedelta(hours=11)}
    assert detect_anomalies(tracker, **window) == []  # 10 hours < min_history 24
    assert len(detect_anomalies(tracker, min_history=10, metrics=("cost_per_hour",), **window)) == 1


def test_groups_have_their_own_baselines() -> None:
    tracker = flat_tracker()
    for hour in range(30):
        calls(tracker, hour, 2, agent="small")
        calls(tracker, hour, 40, agent="big")
    calls(tracker, 30, 40, agent="small")  # normal for "big", a spike for "small"
    calls(tracker, 30, 40, agent="big")
    found = detect_anomalies(
        tracker, by=("agent",), since=H0 + timedelta(hours=30), until=H0 + timedelta(hours=31)
    )
    assert [(a.group, a.metric) for a in found] == [({"agent": "small"}, "cost_per_hour")]


def test_robust_z_edge_cases() -> None:
    from fractions import Fraction

    same = [Fraction(5)] * 10
    assert robust_z(Fraction(5), same) == (0.0, 5)
    assert robust_z(Fraction(6), same)[0] == float("inf")
    mostly = [Fraction(5)] * 9 + [Fraction(15)]  # MAD 0: the mean absolute deviation (1) is used
    assert robust_z(Fraction(7), mostly)[0] == pytest.approx(0.7979 * 2 / 1)


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        detect_anomalies(Tracker(), metrics=("tokens",))


def test_live_monitor_flags_an_expensive_call_off_the_callers_thread() -> None:
    from tokentrail.analytics.live import CallCostMonitor
    from tokentrail.events import EventSink

    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(got.append, kinds="anomaly")
    monitor = CallCostMonitor(bus, min_history=20).attach()
    tracker = flat_tracker()
    tracker.add_sink(EventSink(bus))
    for i in range(40):
        tracker.record(tt.Usage(input_tokens=(1 + i % 3) * 1_000_000), "flat", agent="a")
    tracker.record(tt.Usage(input_tokens=2_000_000), "flat", agent="b")  # its own, empty baseline
    tracker.record(tt.Usage(input_tokens=50_000_000), "flat", agent="a")
    assert bus.flush(5)  # the anomaly is published from the worker: flush again for it
    assert bus.flush(5)
    monitor.detach()
    bus.close()
    [event] = got
    assert isinstance(event, AnomalyEvent)
    assert event.metric == "cost_per_call" and event.group == {"agent": "a", "model": "flat"}
    assert event.value == 50 and event.baseline_median == 2 and monitor.found == 1


_fractions = st.fractions(min_value=0, max_value=50, max_denominator=12)


@given(
    start=st.lists(_fractions, min_size=1, max_size=40),
    steps=st.lists(st.tuples(st.booleans(), _fractions), max_size=40),
    value=_fractions,
)
def test_sliding_window_scores_as_the_plain_baseline(
    start: list[Fraction], steps: list[tuple[bool, Fraction]], value: Fraction
) -> None:
    """The sorted sliding baseline gives exactly the score and median of robust_z over a plain list,
    after any sequence of additions and removals (ties, MAD of 0 and inf scores included)."""
    window, plain = SortedWindow(), []
    for item in start:
        window.add(item)
        plain.append(item)
    for remove, item in steps:
        if remove and len(plain) > 1:
            gone = plain.pop(0)
            window.remove(gone)
        else:
            window.add(item)
            plain.append(item)
        assert window.values == sorted(plain)
        assert window.robust_z(value) == robust_z(value, plain)


@given(
    baseline=st.lists(st.integers(min_value=0, max_value=10**30), min_size=1, max_size=60),
    value=st.integers(min_value=0, max_value=10**30),
)
def test_integer_baselines_score_exactly_as_fractions(baseline: list[int], value: int) -> None:
    """Plain ints (yocto-dollars) take a faster path than Fractions and give the same score and median;
    scaled by SCALE, every median and MAD of them is itself an int."""
    as_fractions = robust_z(Fraction(value), [Fraction(b) for b in baseline])
    assert robust_z(value, baseline) == as_fractions
    window = SortedWindow()
    for item in baseline:
        window.add(item * SCALE)
    score, center = window.robust_z(value * SCALE)
    assert type(center) is int and center == as_fractions[1] * SCALE
    assert score == as_fractions[0]
