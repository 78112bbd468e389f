"""Advice figures against a hand computation from the catalog's per-token prices."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal

import tokentrail as tt
from tokentrail.analytics import advise, caching_opportunities, cheaper_models, context_pressure
from tokentrail.analytics.advice import candidate_models
from tokentrail.pricing.catalog import default_catalog
from tokentrail.tokens import clear_model_limits, set_model_limits
from tokentrail.tracker import Tracker

T0 = datetime(2025, 6, 1, 12, tzinfo=timezone.utc)
M = 1_000_000


def per_token(model: str, provider: str | None = None) -> tuple[Decimal, Decimal, Decimal]:
    """(input, output, cache read) USD per token, read off the catalog one kind at a time."""
    input_ = tt.price(tt.Usage(input_tokens=1000), model, provider).total / 1000
    output = tt.price(tt.Usage(output_tokens=1000), model, provider).total / 1000
    read = tt.price(tt.Usage(input_tokens=1000, cache_read_tokens=1000), model, provider).total / 1000
    return input_, output, read


def test_candidates_are_same_provider_family_chat_models() -> None:
    found = candidate_models(default_catalog(), "gpt-4o")
    assert ("openai", "gpt-4o-mini") in found
    assert all(provider == "openai" and name.startswith("gpt") for provider, name in found)
    assert not any("audio" in name or "realtime" in name or ".ft-" in name for _, name in found)
    assert ("openai", "gpt-4o") not in found


def test_cheaper_model_is_the_next_tier_down_priced_by_hand(make_tracker: Callable[[], Tracker]) -> None:
    tracker = make_tracker()
    usage = tt.Usage(input_tokens=40_000, output_tokens=2_000)
    for _ in range(5):
        tracker.record(usage, "gpt-4o", agent="writer", at=T0)
    [switch] = cheaper_models(tracker)
    assert (switch.agent, switch.model, switch.provider, switch.calls) == ("writer", "gpt-4o", "openai", 5)
    in_, out, _ = per_token("gpt-4o")
    assert switch.actual_cost == 5 * (40_000 * in_ + 2_000 * out)
    cin, cout, _ = per_token(switch.candidate, "openai")
    assert switch.candidate_cost == 200_000 * cin + 10_000 * cout
    assert switch.saving == switch.actual_cost - switch.candidate_cost > 0
    # next tier down: no candidate lies in price between the proposal and the actual cost
    total = tt.Usage(input_tokens=200_000, output_tokens=10_000)
    prices = [
        tt.price(total, name, provider).total
        for provider, name in candidate_models(default_catalog(), "gpt-4o")
    ]
    cheaper = [p for p in prices if p < switch.actual_cost]
    assert switch.candidate_cost == max(cheaper) and switch.cheapest_cost == min(cheaper)


def test_unpriced_groups_get_no_switch_advice() -> None:
    tracker = Tracker()
    tracker.record(tt.Usage(input_tokens=1000, output_tokens=10), "acme-private", agent="x")
    assert cheaper_models(tracker) == []


def test_caching_saving_by_hand(make_tracker: Callable[[], Tracker]) -> None:
    tracker = make_tracker()
    for _ in range(4):
        tracker.record(
            tt.Usage(input_tokens=50_000, output_tokens=100, cache_read_tokens=5_000), "gpt-4o", agent="rag"
        )
    tracker.record(tt.Usage(input_tokens=500, output_tokens=100), "gpt-4o", agent="chat")  # short prompts
    [tip] = caching_opportunities(tracker)
    in_, _, read = per_token("gpt-4o")
    assert (tip.agent, tip.input_tokens, tip.cache_read_tokens) == ("rag", 200_000, 20_000)
    assert tip.uncached_input_tokens == 180_000 and tip.hit_rate == 0.1
    assert tip.input_price_per_mtok == in_ * M and tip.cache_read_price_per_mtok == read * M
    assert tip.max_saving == 180_000 * (in_ - read)
    assert tip.break_even_reads == 0  # OpenAI charges nothing extra to write the cache


def test_caching_break_even_with_a_write_premium() -> None:
    tracker = Tracker()
    tracker.record(tt.Usage(input_tokens=100_000, output_tokens=100), "claude-sonnet-4-5", agent="a")
    [tip] = caching_opportunities(tracker)
    write = tt.price(tt.Usage(input_tokens=1000, cache_write_tokens=1000), "claude-sonnet-4-5").total / 1000
    in_, _, read = per_token("claude-sonnet-4-5")
    assert tip.cache_write_price_per_mtok == write * M
    premium, saving = write - in_, in_ - read
    assert tip.break_even_reads == math.ceil(premium / saving)
    assert tip.break_even_reads >= 1


def test_well_cached_agents_are_not_advised() -> None:
    tracker = Tracker()
    tracker.record(tt.Usage(input_tokens=50_000, output_tokens=10, cache_read_tokens=40_000), "gpt-4o")
    assert caching_opportunities(tracker) == []


def test_sessions_at_the_context_limit() -> None:
    set_model_limits("acme-small", context_window=10_000)
    try:
        tracker = Tracker()
        for tokens in (2_000, 6_000, 9_500, 9_900):
            tracker.record(tt.Usage(input_tokens=tokens, output_tokens=50), "acme-small", session="long")
        tracker.record(tt.Usage(input_tokens=3_000, output_tokens=50), "acme-small", session="short")
        [hit] = context_pressure(tracker)
        assert (hit.session, hit.calls, hit.max_input_tokens, hit.context_window) == (
            "long",
            4,
            9_900,
            10_000,
        )
        assert hit.max_utilization == 0.99 and hit.calls_over_threshold == 2
        assert advise(tracker).context == [hit]
        assert context_pressure(tracker, threshold=0.995) == []
    finally:
        clear_model_limits()
