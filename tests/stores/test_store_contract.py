"""The store contract: every store answers summary/history/reset/totals exactly like the others."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

import pytest

import tokentrail as tt
from tests.scenario import BIG, SMALL, T0, groups, record_scenario
from tokentrail._record import SummaryRow
from tokentrail.stores.base import GROUP_KEYS, Store
from tokentrail.stores.memory import MemoryStore
from tokentrail.tracker import Tracker

MakeStore = Callable[[], Store]


def same(got: list[SummaryRow], expected: list[SummaryRow]) -> bool:
    """Rows equal field for field; the float duration sum only up to rounding (order of addition)."""
    if len(got) != len(expected):
        return False
    for a, b in zip(got, expected, strict=True):
        if a.duration_ms != pytest.approx(b.duration_ms, rel=1e-12):
            return False
        a.duration_ms = b.duration_ms
    return got == expected


@pytest.fixture
def populated(make_store: MakeStore) -> Tracker:
    return record_scenario(Tracker(store=make_store()))


def test_grouping_filters_and_totals(populated: Tracker) -> None:
    rows = populated.summary()
    assert groups(rows, "agent", "model") == {
        ("researcher", "gpt-4o"): 1,
        ("researcher", "claude-sonnet-4-5"): 1,
        ("writer", "gpt-4o"): 1,
        ("writer", "acme-private"): 1,
    }
    assert groups(populated.summary(by="tag"), "tag") == {("eval",): 2, ("web",): 2, (None,): 2}
    assert groups(populated.summary(by="day"), "day") == {
        (T0.date(),): 3,
        ((T0 + timedelta(days=1)).date(),): 1,
    }
    assert populated.totals(agent=["writer", "nobody"]).calls == 2
    assert populated.totals(tag="eval").calls == 2
    assert populated.totals(priced=False).calls == 1
    assert populated.totals(status=tt.UsageStatus.COMPLETE).calls == 4
    totals = populated.totals()
    assert totals.calls == 4 and totals.unpriced_calls == 1
    expected = sum(
        tt.price(u, m, at=T0).total_units  # type: ignore[attr-defined]
        for u, m in [(SMALL, "gpt-4o"), (BIG, "claude-sonnet-4-5"), (BIG, "gpt-4o")]
    )
    assert totals.cost_units == expected
    assert totals.timed_calls == 2 and totals.duration_ms == pytest.approx(500.0)
    with pytest.raises(ValueError):
        populated.summary(by="colour")
    with pytest.raises(ValueError):
        populated.totals(colour="red")


def test_since_and_until_cut_inside_an_hour(populated: Tracker) -> None:
    window = populated.totals(since=T0 + timedelta(minutes=10), until=T0 + timedelta(hours=1, minutes=10))
    assert window.calls == 2
    assert populated.totals(until=T0 + timedelta(minutes=30)).calls == 1
    assert populated.totals(since=T0 + timedelta(hours=2)).calls == 1
    assert populated.totals(since=T0, until=T0 + timedelta(hours=2)).calls == 3


def test_history_order_limit_and_round_trip(make_store: MakeStore) -> None:
    tracker = Tracker(store=make_store())
    recorded = [
        tracker.record(
            SMALL, "gpt-4o", duration_ms=12.5, provider_cost="0.001", context={"service_tier": "flex"}
        ),
        tracker.record(tt.Usage(input_tokens=2**33, output_tokens=1), "gpt-4o"),
        tracker.record(
            tt.Usage(input_tokens=10, input_audio_tokens=5, output_tokens=3, requests=2), "gpt-4o"
        ),
        tracker.record(tt.Usage.unknown("stream cut"), "gpt-4o"),
        tracker.record(SMALL, "unknown-model", tags=["a", "b"], agent="x"),
        tracker.record(SMALL, "gpt-4o", duration_ms=900.0, ttft_ms=120.25),
    ]
    assert sorted(tracker.history(), key=lambda r: r.id) == sorted(recorded, key=lambda r: r.id)
    assert [r.id for r in tracker.history(limit=2)] == [r.id for r in recorded[-2:]]
    assert tracker.history(limit=0) == []
    assert [r.id for r in tracker.history(tag="b")] == [recorded[-2].id]
    assert [r.ttft_ms for r in tracker.history(limit=1)] == [120.25]


def test_reset_scopes_and_children(make_store: MakeStore) -> None:
    root = Tracker(store=make_store())
    root.record(SMALL, "gpt-4o")
    root.child("team").record(SMALL, "gpt-4o")
    root.child("team").child("a").record(BIG, "gpt-4o")
    assert root.child("team").totals().calls == 2
    assert root.child("team").totals(include_children=False).calls == 1
    assert root.children() == ["team"]
    assert root.child("team").reset() == 2
    assert root.totals().calls == 1
    root.record(BIG, "gpt-4o", agent="w")
    assert root.reset(agent="w") == 1
    assert root.reset() == 1
    assert root.totals().calls == 0 and root.history() == []


def test_appending_the_same_record_twice_counts_once(make_store: MakeStore) -> None:
    store = make_store()
    if isinstance(store, MemoryStore):
        pytest.skip("the memory store keeps what it is given")
    tracker = Tracker(store=store)
    record = tracker.record(SMALL, "gpt-4o")
    store.append(record)
    store.flush()  # type: ignore[attr-defined]
    store.append(record)
    assert tracker.totals().calls == 1 and len(tracker.history()) == 1


def test_random_workload_matches_the_memory_store(make_store: MakeStore) -> None:
    """Differential: the same random records and queries give identical rows in every store."""
    rng = random.Random(6)
    reference, tested = Tracker(), Tracker(store=make_store())
    agents, models = ["a", "b", None, "c"], ["gpt-4o", "claude-sonnet-4-5", "mystery-model", "gpt-4o-mini"]
    for _i in range(400):
        usage = tt.Usage(
            input_tokens=rng.randrange(0, 5000), output_tokens=rng.randrange(0, 800), cache_read_tokens=0
        )
        kwargs = dict(
            at=T0 + timedelta(minutes=rng.randrange(0, 60 * 30)),
            agent=rng.choice(agents),
            session=f"s{rng.randrange(3)}",
            tags=rng.sample(["x", "y", "z"], rng.randrange(0, 3)),
            duration_ms=rng.choice([None, rng.random() * 1000]),
        )
        model = rng.choice(models)
        record = reference.record(usage, model, **kwargs)  # type: ignore[arg-type]
        tested.store.append(record)
    windows = [
        (None, None),
        (T0 + timedelta(minutes=17), None),
        (None, T0 + timedelta(hours=7, minutes=3)),
        (T0 + timedelta(hours=2, minutes=59), T0 + timedelta(hours=20, seconds=1)),
        (T0 + timedelta(hours=3, minutes=5), T0 + timedelta(hours=3, minutes=50)),
        (T0 + timedelta(hours=3), T0 + timedelta(hours=9)),
        (T0 + timedelta(hours=4, minutes=30), T0 + timedelta(hours=5)),
    ]
    for by in [("agent", "model"), ("tag",), ("hour",), ("day", "session"), tuple(GROUP_KEYS[:6]), ()]:
        for since, until in windows:
            for filters in [{}, {"agent": "a"}, {"tag": ["x", "z"]}, {"priced": False}, {"agent": None}]:
                expected = reference.summary(by, since, until, **filters)
                got = tested.summary(by, since, until, **filters)
                assert same(got, expected), (by, since, until, filters)
    assert tested.history(since=windows[1][0]) == reference.history(since=windows[1][0])
    assert tested.history(limit=7, agent="b") == reference.history(limit=7, agent="b")
    assert tested.reset(
        agent="a",
    ) == reference.reset(agent="a")
    assert same(tested.summary(("hour", "agent")), reference.summary(("hour", "agent")))


def test_estimated_filter_selects_records_by_their_pre_call_estimate(make_store: MakeStore) -> None:
    """`estimated=True` lists only the records that carry a pre-call estimate (`False` the others), with
    the other filters, time ranges and limits; summaries and reset refuse it (rollups do not keep it)."""
    rng = random.Random(8)
    reference, tested = Tracker(), Tracker(store=make_store())
    for i in range(300):
        record = reference.record(
            tt.Usage(input_tokens=rng.randrange(1, 4000), output_tokens=rng.randrange(0, 300)),
            rng.choice(["gpt-4o", "claude-sonnet-4-5", "mystery-model"]),
            agent=rng.choice(["a", "b", None]),
            tags=rng.sample(["x", "y"], rng.randrange(0, 2)),
            at=T0 + timedelta(minutes=rng.randrange(0, 60 * 20)),
            estimated_input_tokens=rng.choice([None, None, 0, rng.randrange(1, 5000)]) if i % 3 else None,
        )
        tested.store.append(record)
    everything = reference.history()
    with_estimate = [r for r in everything if r.estimated_input_tokens is not None]
    assert 0 < len(with_estimate) < len(everything) / 2
    assert tested.history(estimated=True) == with_estimate
    assert tested.history(estimated=False) == [r for r in everything if r.estimated_input_tokens is None]
    assert tested.history(estimated=[True, False]) == everything
    assert tested.history(estimated=[]) == []
    since, until = T0 + timedelta(hours=2, minutes=13), T0 + timedelta(hours=11, minutes=47)
    for filters in [{"agent": "a"}, {"tag": "x"}, {"priced": False}, {"model": "gpt-4o", "agent": None}]:
        got = tested.history(since=since, until=until, estimated=True, **filters)
        assert got == reference.history(since=since, until=until, estimated=True, **filters), filters
        assert all(r.estimated_input_tokens is not None for r in got)
    assert tested.history(limit=5, estimated=True) == with_estimate[-5:]
    for refused in (lambda: tested.summary("agent", estimated=True), lambda: tested.reset(estimated=False)):
        with pytest.raises(ValueError, match="'estimated' filter selects raw records"):
            refused()
    assert tested.totals().calls == 300  # the refused reset removed nothing


def test_reprice_honours_the_estimated_filter(make_store: MakeStore) -> None:
    from tokentrail._types import Cost
    from tokentrail.stores.base import Query, RepricingStore

    tracker = Tracker(store=make_store())
    tracker.record(SMALL, "gpt-4o", at=T0, estimated_input_tokens=10)
    tracker.record(SMALL, "gpt-4o", at=T0)
    tracker.record(BIG, "mystery-model", at=T0 + timedelta(hours=1), estimated_input_tokens=0)
    store = tracker.store
    assert isinstance(store, RepricingStore)
    one = Cost(priced=True, parts=(1,))
    assert store.reprice(Query.build({"estimated": True}), lambda record: one, "estimated-only") == 2
    costs = [r.cost_units for r in tracker.history(prices="estimated-only")]
    assert costs == [1, tt.price(SMALL, "gpt-4o", at=T0).total_units, 1]  # type: ignore[attr-defined]


def test_every_unit_round_trips_and_sums(make_store: MakeStore) -> None:
    """A record carrying every count a Usage has (durations, pages, searches, …) reads back equal, and
    summaries sum each count, beside plain records (the compact rows of the memory store)."""
    from tests.stores.every_unit import EVERY_UNIT

    tracker = Tracker(store=make_store())
    recorded = [
        tracker.record(EVERY_UNIT, "gpt-4o", agent="all", at=T0),
        tracker.record(SMALL, "gpt-4o", agent="all", at=T0 + timedelta(minutes=1)),
        tracker.record(EVERY_UNIT, "whisper-1", provider="openai", agent="all", at=T0 + timedelta(hours=3)),
    ]
    assert sorted(tracker.history(), key=lambda r: r.id) == sorted(recorded, key=lambda r: r.id)
    [row] = tracker.summary("agent")
    assert row.usage == EVERY_UNIT + SMALL + EVERY_UNIT
    assert row.cost_units == sum(r.cost_units or 0 for r in recorded)
    late = tracker.totals(since=T0 + timedelta(hours=3, minutes=1))  # a cut inside the hour: raw rows
    assert late.calls == 0
    cut = tracker.totals(since=T0 + timedelta(minutes=1), until=T0 + timedelta(hours=3, minutes=1))
    assert cut.usage == SMALL + EVERY_UNIT
