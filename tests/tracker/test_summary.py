"""summary(), totals(), history() and reset(): grouping, filters, time ranges, hierarchy."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

import tokentrail as tt
from tests.scenario import BIG, SMALL, T0, groups, record_scenario
from tokentrail.scope import scope
from tokentrail.tracker import Tracker


def cost(usage: tt.Usage, model: str, at: datetime = T0) -> Decimal:
    return tt.price(usage, model, at=at).total


@pytest.fixture
def populated() -> Tracker:
    return record_scenario(Tracker())


def test_default_grouping_is_agent_and_model(populated: Tracker) -> None:
    rows = populated.summary()
    assert groups(rows, "agent", "model") == {
        ("researcher", "gpt-4o"): 1,
        ("researcher", "claude-sonnet-4-5"): 1,
        ("writer", "gpt-4o"): 1,
        ("writer", "acme-private"): 1,
    }
    assert rows[0].cost == max(row.cost for row in rows)  # most expensive first


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("agent", {("researcher",): 2, ("writer",): 2}),
        ("session", {("s1",): 2, ("s2",): 2}),
        ("user", {("alice",): 2, ("bob",): 2}),
        ("tool", {("search",): 1, (None,): 3}),
        ("model", {("gpt-4o",): 2, ("claude-sonnet-4-5",): 1, ("acme-private",): 1}),
        ("provider", {("openai",): 2, ("anthropic",): 1, (None,): 1}),
        ("tag", {("eval",): 2, ("web",): 2, (None,): 2}),
        ("path", {("researcher",): 2, ("writer",): 2}),
        ("status", {("complete",): 4}),
        ("day", {(date(2025, 6, 1),): 3, (date(2025, 6, 2),): 1}),
        ("month", {(date(2025, 6, 1),): 4}),
    ],
)
def test_groups_by_every_key(populated: Tracker, key: str, expected: dict[tuple[object, ...], int]) -> None:
    assert groups(populated.summary(by=(key,)), key) == expected


def test_hour_buckets_are_utc_datetimes_in_order(populated: Tracker) -> None:
    rows = populated.summary(by="hour")
    assert [row.group["hour"] for row in rows] == [T0, T0 + timedelta(hours=1), T0 + timedelta(days=1)]
    assert [row.calls for row in rows] == [2, 1, 1]


def test_a_comma_separated_string_names_several_keys(populated: Tracker) -> None:
    assert groups(populated.summary(by="user,day"), "user", "day")[("alice", date(2025, 6, 1))] == 2


def test_unknown_group_keys_and_filters_are_errors(populated: Tracker) -> None:
    with pytest.raises(ValueError, match="cannot group by"):
        populated.summary(by=("colour",))
    with pytest.raises(ValueError, match="unknown filter"):
        populated.summary(colour="red")


def test_filters_narrow_and_accept_lists(populated: Tracker) -> None:
    assert populated.totals(agent="writer").calls == 2
    assert populated.totals(model=["gpt-4o", "acme-private"]).calls == 3
    assert populated.totals(tag="web").calls == 2
    assert populated.totals(priced=False).calls == 1
    assert populated.totals(status=tt.UsageStatus.COMPLETE).calls == 4


def test_totals_are_exact_and_count_unpriced_calls(populated: Tracker) -> None:
    totals = populated.totals()
    expected = cost(SMALL, "gpt-4o") + cost(BIG, "claude-sonnet-4-5") + cost(BIG, "gpt-4o")
    assert totals.cost == expected
    assert (totals.calls, totals.unpriced_calls) == (4, 1)
    assert totals.input_tokens == 100 + 2_000 + 2_000 + 100
    assert totals.usage.requests == 4


def test_derived_metrics(populated: Tracker) -> None:
    totals = populated.totals()
    assert totals.cost_per_call == totals.cost / 3
    assert totals.cost_per_1k_tokens == totals.cost * 1000 / (110 + 2_500 + 2_500)
    assert totals.cache_hit_ratio == pytest.approx(2_000 / 4_200)
    assert totals.timed_calls == 2
    assert totals.average_duration_ms == pytest.approx(250.0)
    assert totals.tokens_per_second == pytest.approx((10 + 500) / 0.5)


def test_since_and_until_cut_inside_an_hour(populated: Tracker) -> None:
    window = populated.totals(since=T0 + timedelta(minutes=10), until=T0 + timedelta(hours=1, minutes=10))
    assert window.calls == 2
    assert window.cost == cost(BIG, "claude-sonnet-4-5") + cost(BIG, "gpt-4o")
    assert populated.totals(until=T0 + timedelta(minutes=30)).calls == 1  # until is exclusive
    assert populated.totals(since=T0 + timedelta(hours=2)).calls == 1


def test_history_is_oldest_first_and_filterable(populated: Tracker) -> None:
    history = populated.history()
    assert [r.timestamp_us for r in history] == sorted(r.timestamp_us for r in history)
    assert [r.model for r in populated.history(agent="researcher")] == ["gpt-4o", "claude-sonnet-4-5"]
    assert [r.model for r in populated.history(limit=1)] == ["acme-private"]
    assert populated.history(since=T0 + timedelta(days=1))[0].model == "acme-private"


def test_history_gives_back_what_was_recorded() -> None:
    tracker = Tracker()
    recorded = [
        tracker.record(
            SMALL, "gpt-4o", duration_ms=12.5, provider_cost="0.001", context={"service_tier": "flex"}
        ),
        tracker.record(tt.Usage(input_tokens=2**33, output_tokens=1), "gpt-4o"),  # over 32 bits
        tracker.record(
            tt.Usage(input_tokens=10, input_audio_tokens=5, output_tokens=3, requests=2), "gpt-4o"
        ),
        tracker.record(tt.Usage.unknown("stream cut"), "gpt-4o"),
        tracker.record(SMALL, "unknown-model"),
    ]
    assert sorted(tracker.history(), key=lambda r: r.id) == sorted(recorded, key=lambda r: r.id)


def test_odd_costs_stay_exact() -> None:
    catalog = tt.Catalog.from_snapshot()
    catalog.set_price("tiny", input="0.000000000001", output="0.123456789")
    tracker = Tracker(catalog=catalog)
    records = [tracker.record(tt.Usage(input_tokens=3, output_tokens=7), "tiny") for _ in range(3)]
    assert tracker.totals().cost_units == sum(r.cost_units or 0 for r in records)
    assert tracker.history()[0].cost == records[0].cost


def test_reset_of_a_scope_forgets_only_its_records(populated: Tracker) -> None:
    assert populated.reset(agent="writer") == 2
    assert groups(populated.summary(by="agent"), "agent") == {("researcher",): 2}
    populated.record(SMALL, "gpt-4o", agent="writer")
    assert populated.totals(agent="writer").calls == 1


def test_reset_of_the_root_forgets_everything(populated: Tracker) -> None:
    assert populated.reset() == 4
    assert populated.totals().calls == 0
    assert populated.history() == []
    populated.record(SMALL, "gpt-4o")
    assert populated.totals().cost == cost(SMALL, "gpt-4o", datetime.now(timezone.utc))


def test_reset_of_a_child_forgets_its_subtree_only() -> None:
    root = Tracker()
    root.record(SMALL, "gpt-4o")
    root.child("team").record(SMALL, "gpt-4o")
    root.child("team").child("a").record(SMALL, "gpt-4o")
    assert root.child("team").reset() == 2
    assert root.totals().calls == 1


def test_children_roll_up_to_parents() -> None:
    root = Tracker()
    root.record(SMALL, "gpt-4o")
    team = root.child("team")
    team.record(BIG, "gpt-4o")
    team.child("researcher").record(BIG, "claude-sonnet-4-5")
    with scope(agent="critic"):
        team.record(SMALL, "gpt-4o")  # a scope below a child node adds a level too
    assert root.children() == ["team"]
    assert team.children() == ["critic", "researcher"]
    assert team.totals().calls == 3
    assert team.totals(include_children=False).calls == 1
    assert root.totals(include_children=False).calls == 1
    parts = [team.totals(include_children=False)] + [team.child(name).totals() for name in team.children()]
    assert team.totals().cost_units == sum(part.cost_units for part in parts)
