"""Hand-checked prices at the edges: tiers, dated changes, time-of-day windows, variants, caches.

Expected values are computed here from the published per-million prices (genai-prices catalog data),
not taken from the engine.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

import tokentrail as tt

M = Decimal(1_000_000)


def usd(per_million: str, tokens: int) -> Decimal:
    return Decimal(per_million) * tokens / M


def test_gpt_4o_components_add_up_by_hand() -> None:
    usage = tt.Usage(input_tokens=12_000, output_tokens=3_000, cache_read_tokens=4_000)
    cost = tt.price(usage, "gpt-4o")
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens
    assert cost.components["input"] == usd("2.5", 8_000)
    assert cost.components["cache_read"] == usd("1.25", 4_000)
    assert cost.components["output"] == usd("10", 3_000)
    assert cost.total == Decimal("0.055")
    assert cost.input == Decimal("0.025") and cost.output == Decimal("0.03")
    assert (cost.provider, cost.model) == ("openai", "gpt-4o")


def test_mini_is_never_priced_as_its_bigger_sibling() -> None:
    usage = tt.Usage(1_000_000, 1_000_000)
    assert tt.price(usage, "gpt-4o-mini").model == "gpt-4o-mini"
    assert tt.price(usage, "gpt-4o-mini").total == Decimal("0.75")  # $0.15 + $0.60
    assert tt.price(usage, "gpt-4o").total == Decimal("12.5")  # $2.50 + $10


@pytest.mark.parametrize(
    ("prompt", "input_rate", "output_rate"),
    [(200_000, "3", "15"), (200_001, "6", "22.5")],
    ids=["exactly-the-threshold", "one-token-over"],
)
def test_long_context_tier_switches_one_token_past_the_threshold(
    prompt: int, input_rate: str, output_rate: str
) -> None:
    usage = tt.Usage(input_tokens=prompt, output_tokens=1000)
    cost = tt.price(usage, "claude-sonnet-4-5", "anthropic")
    assert cost.total == usd(input_rate, prompt) + usd(output_rate, 1000)


def test_tier_threshold_counts_cached_prompt_tokens() -> None:
    usage = tt.Usage(input_tokens=200_001, output_tokens=0, cache_read_tokens=150_000)
    cost = tt.price(usage, "claude-sonnet-4-5", "anthropic")
    # the whole prompt (cached included) crossed 200k: every part pays the long-context rate
    assert cost.components["input"] == usd("6", 50_001)
    assert cost.components["cache_read"] == usd("0.6", 150_000)


@pytest.mark.parametrize(
    ("at", "input_rate", "output_rate"),
    [
        (datetime(2025, 6, 9, 23, 59, 59, 999_999, tzinfo=timezone.utc), "10", "40"),
        (datetime(2025, 6, 10, 0, 0, tzinfo=timezone.utc), "2", "8"),
        (date(2025, 6, 10), "2", "8"),
    ],
    ids=["day-before", "day-of", "date-object"],
)
def test_dated_price_change_applies_from_its_first_utc_day(
    at: datetime, input_rate: str, output_rate: str
) -> None:
    usage = tt.Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    cost = tt.price(usage, "o3", "openai", at=at)
    assert cost.total == Decimal(input_rate) + Decimal(output_rate)
    assert cost.rule is not None
    assert cost.rule.price_date == (date(2025, 6, 10) if input_rate == "2" else None)


def test_naive_timestamps_are_read_as_utc() -> None:
    usage = tt.Usage(1_000_000, 0)
    naive = tt.price(usage, "o3", at=datetime(2025, 6, 10, 0, 30))
    aware = tt.price(usage, "o3", at=datetime(2025, 6, 10, 0, 30, tzinfo=timezone.utc))
    assert naive.total == aware.total == Decimal(2)


@pytest.mark.parametrize(
    ("hour", "minute", "input_rate"),
    [(16, 29, "0.27"), (16, 30, "0.135"), (0, 29, "0.135"), (0, 30, "0.27")],
)
def test_deepseek_off_peak_window(hour: int, minute: int, input_rate: str) -> None:
    at = datetime(2026, 11, 24, hour, minute, tzinfo=timezone.utc)
    cost = tt.price(tt.Usage(1_000_000, 0), "deepseek-chat", "deepseek", at=at)
    assert cost.total == Decimal(input_rate)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (None, "11.25"),
        ({"service_tier": "default"}, "11.25"),
        ({"service_tier": "flex"}, "5.625"),
        ({"service_tier": "priority"}, "22.5"),
        ({"processing": "batch"}, "5.625"),
        ({"service_tier": "no-such-tier"}, "11.25"),
    ],
)
def test_request_context_selects_the_variant(context: dict[str, str] | None, expected: str) -> None:
    cost = tt.price(tt.Usage(1_000_000, 1_000_000), "gpt-5", "openai", context=context)
    assert cost.total == Decimal(expected)
    if context and expected != "11.25":
        assert cost.rule is not None and cost.rule.variant == tuple(context.items())


def test_cache_writes_5m_and_1h_are_priced_apart() -> None:
    usage = tt.Usage(
        input_tokens=10_000, output_tokens=0, cache_write_tokens=6_000, cache_write_1h_tokens=2_000
    )
    cost = tt.price(usage, "claude-sonnet-4-0", "anthropic")
    assert cost.components["input"] == usd("3", 4_000)
    assert cost.components["cache_write"] == usd("3.75", 4_000)  # the 5-minute writes
    assert cost.components["cache_write_1h"] == usd("6", 2_000)


def test_reasoning_share_is_part_of_output() -> None:
    usage = tt.Usage(input_tokens=100, output_tokens=1_000, reasoning_tokens=600)
    cost = tt.price(usage, "o3", "openai", at=date(2025, 7, 1))
    assert cost.output == usd("8", 1_000)
    assert cost.reasoning == usd("8", 600)


def test_unknown_model_is_unpriced_never_zero() -> None:
    cost = tt.price(tt.Usage(10, 10), "my-own-finetune-xyz")
    assert not cost.priced
    assert cost.reason is not None and "my-own-finetune-xyz" in cost.reason
    assert "priced=False" in repr(cost)


def test_strict_unknown_model_raises_with_close_matches() -> None:
    with pytest.raises(tt.UnknownModelError) as info:
        tt.price(tt.Usage(10, 10), "gpt-4oo-mini-x", strict=True)
    assert info.value.close_matches and info.value.close_matches[0].startswith("gpt-4o")
    assert "close matches" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_unknown_usage_is_not_priced_as_zero() -> None:
    cost = tt.price(tt.Usage.unknown("stream ended without usage"), "gpt-4o")
    assert not cost.priced and cost.reason == "usage unknown: stream ended without usage"


def test_missing_model_name_is_unpriced() -> None:
    assert not tt.price(tt.Usage(1, 1), None).priced
    assert not tt.price(tt.Usage(1, 1), "").priced


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((None, "gpt-4o"), {}, tt.InvalidUsageError),
        (({"input_tokens": 1}, "gpt-4o"), {}, tt.InvalidUsageError),
        ((tt.Usage(1, 1), 42), {}, tt.PricingError),
        ((tt.Usage(1, 1), "gpt-4o", 7), {}, tt.PricingError),
        ((tt.Usage(1, 1), "gpt-4o"), {"at": "2025-01-01"}, tt.PricingError),
        ((tt.Usage(1, 1), "gpt-4o"), {"context": "flex"}, tt.PricingError),
    ],
)
def test_bad_arguments_raise_typed_errors(
    args: tuple[object, ...], kwargs: dict[str, object], error: type
) -> None:
    with pytest.raises(error) as info:
        tt.price(*args, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert str(info.value)


def test_costs_add_exactly() -> None:
    a = tt.price(tt.Usage(1_000, 10), "gpt-4o")
    b = tt.price(tt.Usage(3, 7, cache_read_tokens=2), "gpt-4o")
    summed = a + b
    assert summed.total == a.total + b.total
    assert summed.components["cache_read"] == b.components["cache_read"]
    mixed = a + tt.price(tt.Usage(5, 5), "claude-3-5-haiku-latest")
    assert mixed.total == a.total + tt.price(tt.Usage(5, 5), "claude-3-5-haiku-latest").total
