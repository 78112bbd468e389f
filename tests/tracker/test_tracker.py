"""Tracker.record(): pricing, attribution, sinks, and never raising into the caller."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal

import pytest

import tokentrail as tt
from tokentrail._record import Record
from tokentrail.errors import StoreError
from tokentrail.scope import scope
from tokentrail.tracker import Tracker, configure, get_tracker

USAGE = tt.Usage(input_tokens=1_000, output_tokens=200, cache_read_tokens=300, reasoning_tokens=50)


def test_records_the_price_the_catalog_gives(tracker: Tracker) -> None:
    record = tracker.record(USAGE, "gpt-4o")
    assert record.priced
    assert record.cost == tt.price(USAGE, "gpt-4o").total == Decimal("0.004125")
    assert record.price_rule is not None and record.price_rule.model == "gpt-4o"
    assert record.provider == "openai"  # filled in from the price rule when not given
    assert tracker.totals().cost == Decimal("0.004125")


def test_an_unknown_model_is_recorded_unpriced_never_as_zero(tracker: Tracker) -> None:
    record = tracker.record(USAGE, "acme-private-llm")
    assert not record.priced
    assert record.cost is None
    assert record.unpriced_reason is not None and "acme-private-llm" in record.unpriced_reason
    totals = tracker.totals()
    assert (totals.calls, totals.unpriced_calls, totals.priced_calls) == (1, 1, 0)
    assert totals.input_tokens == 1_000
    assert totals.cost_per_call is None


def test_the_active_scope_attributes_the_record(tracker: Tracker) -> None:
    with scope(agent="researcher", session="s1", user="u1", tool="search", tags=["a"]):
        record = tracker.record(USAGE, "gpt-4o")
    assert (record.agent, record.session, record.user, record.tool, record.tags, record.path) == (
        "researcher",
        "s1",
        "u1",
        "search",
        ("a",),
        ("researcher",),
    )


def test_keywords_override_the_scope_and_tags_add_up(tracker: Tracker) -> None:
    with scope(agent="researcher", user="u1", tags=["a"]):
        record = tracker.record(USAGE, "gpt-4o", agent="critic", tool="lint", tags=["b"])
    assert (record.agent, record.user, record.tool, record.tags) == ("critic", "u1", "lint", ("a", "b"))


def test_a_child_tracker_names_the_agent_and_the_path() -> None:
    root = Tracker()
    record = root.child("team").child("researcher").record(USAGE, "gpt-4o")
    assert record.agent == "researcher"
    assert record.path == ("team", "researcher")
    assert root.child("team") is root.child("team")


def test_pricing_failures_give_an_unpriced_record_and_are_counted(tracker: Tracker) -> None:
    record = tracker.record("not a usage", "gpt-4o")  # type: ignore[arg-type]
    assert not record.priced
    assert record.usage.status is tt.UsageStatus.UNKNOWN
    assert record.unpriced_reason is not None and record.unpriced_reason.startswith("pricing failed")
    assert tracker.pricing_errors == 1
    assert tracker.totals().status_counts == {"unknown": 1}


def test_bad_optional_values_are_dropped_not_raised(tracker: Tracker) -> None:
    record = tracker.record(USAGE, "gpt-4o", duration_ms=float("nan"), provider_cost="n/a", tags=5)  # type: ignore[arg-type]
    assert record.duration_ms is None
    assert record.provider_cost is None
    assert record.priced


def test_a_failing_sink_is_logged_and_counted_and_other_sinks_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[tt.Usage] = []

    def broken(record: object) -> None:
        raise RuntimeError("sink down")

    tracker = Tracker(sinks=[broken, lambda record: received.append(record.usage)])
    with caplog.at_level(logging.WARNING, logger="tokentrail"):
        first = tracker.record(USAGE, "gpt-4o")
        tracker.record(USAGE, "gpt-4o")
    assert first.priced
    assert tracker.sink_errors == 2
    assert received == [USAGE, USAGE]
    assert tracker.totals().calls == 2  # the store is a sink too, and it still has both
    assert "sink down" in caplog.text


def test_a_list_is_a_sink(tracker: Tracker) -> None:
    collected: list[object] = []
    tracker.add_sink(collected)
    record = tracker.record(USAGE, "gpt-4o")
    assert collected == [record]


def test_provider_reported_cost_is_kept_beside_ours(tracker: Tracker) -> None:
    record = tracker.record(USAGE, "gpt-4o", provider_cost=0.0042)
    assert record.provider_cost == Decimal("0.0042")
    assert record.cost_difference == Decimal("0.000075")
    tracker.record(USAGE, "gpt-4o")
    totals = tracker.totals()
    assert totals.provider_cost == Decimal("0.0042")
    assert totals.provider_cost_calls == 1
    assert totals.provider_cost_difference == Decimal("0.000075")


def test_at_sets_the_timestamp_and_the_price_date(tracker: Tracker) -> None:
    at = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
    record = tracker.record(USAGE, "gpt-4o", at=at)
    assert record.timestamp == at
    assert record.cost == tt.price(USAGE, "gpt-4o", at=at).total


def test_a_user_price_is_honoured_even_when_zero() -> None:
    catalog = tt.Catalog.from_snapshot()
    catalog.set_price("internal-model", input=0, output=0)
    tracker = Tracker(catalog=catalog)
    record = tracker.record(USAGE, "internal-model")
    assert record.priced and record.cost == 0
    assert tracker.totals().unpriced_calls == 0


def test_unknown_store_urls_are_refused() -> None:
    with pytest.raises(StoreError):
        Tracker(store="mongodb://nowhere")


def test_get_tracker_returns_one_process_default(fresh_default: None) -> None:
    assert get_tracker() is get_tracker()


def test_configure_installs_a_new_default(fresh_default: None) -> None:
    collected: list[object] = []
    installed = configure(sinks=[collected])
    assert get_tracker() is installed
    get_tracker().record(USAGE, "gpt-4o")
    assert len(collected) == 1
    mine = Tracker()
    assert configure(mine) is mine and get_tracker() is mine


def test_a_malformed_record_is_rejected_without_losing_its_batch(tracker: Tracker) -> None:
    from dataclasses import replace

    from tokentrail.stores.memory import MemoryStore

    store = tracker.store
    assert isinstance(store, MemoryStore)
    good = tracker.record(USAGE, "gpt-4o")
    store.append(replace(good, id=good.id + 1, timestamp_us="yesterday"))  # type: ignore[arg-type]
    store.append(replace(good, id=good.id + 2, usage=None))  # type: ignore[arg-type]
    tracker.record(USAGE, "gpt-4o")
    assert tracker.totals().calls == 2
    assert store.rejected == 2
    assert len(tracker.history()) == 2


def test_a_recorded_call_sets_every_record_field(tracker: Tracker) -> None:
    from dataclasses import fields

    record = tracker.record(USAGE, "gpt-4o", duration_ms=12.5, provider_cost="0.01", ttft_ms=3.0)
    values = {f.name: getattr(record, f.name) for f in fields(Record)}  # none left unset
    assert Record(**values) == record
    assert (record.duration_ms, record.ttft_ms, record.provider_cost) == (12.5, 3.0, Decimal("0.01"))
    assert tracker.record(USAGE, "gpt-4o").id > record.id


def test_batches_mixing_plain_and_unusual_records_are_stored_exactly() -> None:
    """The memory store's column-wise path and its per-record path keep the same records and totals."""
    catalog = tt.Catalog.from_snapshot()
    catalog.set_price("odd-model", input=Decimal("0.000000000001"), output=Decimal(3))  # 10**-18 USD a token
    tracker = Tracker(catalog=catalog)
    kept: list[Record] = []
    tracker.add_sink(kept)
    wide = tt.Usage(input_tokens=10, output_tokens=5, input_audio_tokens=4)
    big = tt.Usage(input_tokens=2**33, output_tokens=1)
    for i in range(1_500):
        with scope(agent=("a", "b", "c")[i % 3]):
            tracker.record(
                wide if i % 19 == 0 else big if i % 23 == 0 else USAGE,
                "odd-model" if i % 17 == 0 else "gpt-4o",
                duration_ms=None if i % 5 == 0 else float(i),
                provider_cost=Decimal(i) / 1000 if i % 7 == 0 else None,
                estimated_input_tokens=i if i % 11 == 0 else None,
                ttft_ms=float(i) if i % 13 == 0 else None,
                context={"service_tier": "flex"} if i % 29 == 0 else None,
            )
        if i % 500 == 499:  # and uniform batches: one scope, one model, plain records
            for _ in range(600):
                tracker.record(USAGE, "gpt-4o", duration_ms=1.0)
    assert sorted(tracker.history(), key=lambda record: record.id) == kept
    totals = tracker.totals()
    assert totals.calls == len(kept) == 3_300
    assert totals.cost_units == sum(record.cost_units or 0 for record in kept)
    assert totals.input_tokens == sum(record.usage.input_tokens for record in kept)
    assert totals.provider_cost == sum(record.provider_cost or 0 for record in kept)
    assert totals.duration_ms == sum(record.duration_ms or 0.0 for record in kept)
    assert totals.timed_calls == sum(record.duration_ms is not None for record in kept)


def test_one_unusual_call_in_a_batch_of_one_agents_calls_is_stored_exactly(tracker: Tracker) -> None:
    searched = tt.Usage(input_tokens=1_000, output_tokens=200, web_searches=2)
    with scope(agent="solo"):
        for i in range(1_024):
            tracker.record(searched if i == 700 else USAGE, "gpt-4o", duration_ms=1.0)
    totals = tracker.totals()
    assert (totals.calls, totals.usage.web_searches) == (1_024, 2)
    assert totals.input_tokens == 1_024 * 1_000
    assert [record.usage for record in tracker.history() if record.usage.web_searches] == [searched]


def test_a_batch_with_records_of_another_process_keeps_every_id(tracker: Tracker) -> None:
    from dataclasses import replace

    first = tracker.record(USAGE, "gpt-4o")
    other_process = (first.id >> 48 ^ 1) << 48
    copies = [replace(first, id=other_process | n, model="".join(["gpt-", "4o"])) for n in range(1, 700)]
    for copy in copies:
        tracker.store.append(copy)
    assert sorted(record.id for record in tracker.history()) == sorted([first.id, *(c.id for c in copies)])
    assert tracker.totals().calls == 700


def test_tracker_budgets_block_and_settle_through_records() -> None:
    from decimal import Decimal

    import tokentrail as tt

    budget = tt.Budget(
        limit_usd=Decimal("0.01"), window="daily", scope={"agent": "researcher"}, action="block"
    )
    tracker = tt.Tracker(budgets=[budget])
    with tt.scope(agent="researcher"):
        with tracker.reserve("gpt-4o", "openai", input_tokens=1000, max_output_tokens=200):
            tracker.record(tt.Usage(1000, 200), model="gpt-4o")  # $0.0045: settles the reservation
        (status,) = tracker.budget_status()
        assert status.spent_usd == Decimal("0.0045") and status.reserved_usd == 0
        try:
            with tracker.reserve("gpt-4o", "openai", input_tokens=1000, max_output_tokens=1000):
                raise AssertionError("the worst case ($0.0125) does not fit the $0.0055 left")
        except tt.BudgetExceeded as refused:
            assert refused.limit == Decimal("0.01")
    with tracker.reserve("gpt-4o", "openai", input_tokens=1000, max_output_tokens=1000):
        pass  # another agent: no budget applies
