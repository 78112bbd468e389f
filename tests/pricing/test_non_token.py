"""`Cost.non_token`: the share of a cost paid for units that are not tokens, by the catalog's unit families.

The reference is genai-prices' own arithmetic: `calc_price` finds the price set (`model_price`), and its
per-unit loop (the one `ModelPrice.calc_price` runs: leaf counts, then `calc_unit_price` per priced unit)
is replayed here to keep each unit's amount, summed by the unit's `dimensions.family`. The replay's sum is
checked against `calc_price`'s total first, so the reference is genai-prices' result, not our reading of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import genai_prices
import pytest
from genai_prices.data import providers
from genai_prices.types import Usage as GenaiUsage
from genai_prices.types import (
    _collect_resolved_model_prices,
    _compute_registry_priced_counts,
    calc_unit_price,
)
from genai_prices.units import _get_registry

import tokentrail as tt
from tests.pricing.test_every_unit import (
    BY_PRICE_KEY,
    SNAPSHOT,
    YOCTO,
    as_genai_usage,
    price_sets,
    rounds_durations,
)
from tests.pricing.test_golden_genai_prices import model_ref, request_times
from tokentrail._types import Cost, CostLayout, PriceRule

NON_TOKEN_KEYS = {u["price_key"] for u in SNAPSHOT["units"] if u["dimensions"]["family"] != "tokens"}


def reference_split(
    usage: tt.Usage, ref: str, provider_id: str, at: datetime, context: dict[str, str] | None
) -> tuple[Decimal, Decimal] | None:
    """(token share, non-token share) of genai-prices' price of `usage`; None when it finds no model."""
    try:
        theirs = genai_prices.calc_price(
            as_genai_usage(usage),
            ref,
            provider_id=provider_id,
            genai_request_timestamp=at,
            price_context=context,
        )
    except LookupError:
        return None
    registry = _get_registry()
    raw = as_genai_usage(usage)
    if theirs.provider.id == "groq" and theirs.model.id in ("whisper-large-v3", "whisper-large-v3-turbo"):
        seconds = raw.audio_seconds or raw.input_audio_seconds  # calc_price's 10 s minimum, replayed
        if seconds:
            raw.audio_seconds = raw.input_audio_seconds = max(seconds, 10)
    resolved = _collect_resolved_model_prices(theirs.model_price, registry)
    counts = _compute_registry_priced_counts(resolved, GenaiUsage.from_raw(raw))
    tiered = any(not isinstance(p, Decimal) for _, p in resolved)
    prompt = raw.input_tokens or 0 if tiered else 0
    shares = {True: Decimal(0), False: Decimal(0)}
    for unit, price in resolved:
        amount = calc_unit_price(price, counts[unit.usage_key], prompt, unit.per)
        shares[unit.dimensions.get("family") == "tokens"] += amount
    assert shares[True] + shares[False] == theirs.total_price  # the replay is calc_price's arithmetic
    return shares[True], shares[False]


def non_token_cases() -> Iterator[Any]:
    snapshot = {(p["id"], m["id"]): m for p in SNAPSHOT["providers"] for m in p["models"]}
    for provider in providers:
        for model in provider.models:
            raw = snapshot[(provider.id, model.id)]
            if any(key in NON_TOKEN_KEYS for prices in price_sets(raw) for key in prices):
                rounding = any(rounds_durations(prices) for prices in price_sets(raw))
                yield pytest.param(provider, model, rounding, id=f"{provider.id}:{model.id}")


CASES = list(non_token_cases())
# Each case prices these: every non-token unit a Usage carries at once, beside tokens of each kind.
USAGES = [
    tt.Usage(
        input_tokens=180_000,
        output_tokens=7_000,
        cache_read_tokens=40_000,
        reasoning_tokens=2_000,
        output_citation_tokens=1_000,
        web_searches=3,
        input_characters=12_345,
        input_text_messages=7,
        audio_ms=93_456,
        input_audio_ms=90_001,
        output_audio_ms=3_455,
        input_document_pages=11,
        input_annotated_document_pages=4,
        input_pixels=2_000_000,
        storage_searches=2,
        code_executions=5,
        social_searches=1,
        rerank_searches=6,
    ),
    tt.Usage(1_000, 200, web_searches=1, audio_ms=3_000, input_audio_ms=3_000, input_document_pages=1),
    tt.Usage(5, 0, requests=1),
]


def test_the_cases_cover_every_non_token_family() -> None:
    families = {u["dimensions"]["family"] for u in SNAPSHOT["units"]} - {"tokens"}
    priced = {
        BY_PRICE_KEY[key]["dimensions"]["family"]
        for p in SNAPSHOT["providers"]
        for m in p["models"]
        for prices in price_sets(m)
        for key in prices
    }
    assert families & priced >= {"requests", "tool_calls", "durations", "document_pages", "characters"}
    assert len(CASES) >= 100


@pytest.mark.parametrize(("provider", "model", "rounding"), CASES)
def test_non_token_equals_genai_prices_unit_families(provider: Any, model: Any, rounding: bool) -> None:
    ref = model_ref(model)
    contexts: list[dict[str, str] | None] = [None, *(dict(v.when) for v in model.price_variants or ())]
    compared = 0
    for usage in USAGES:
        for at in request_times(model):
            for context in contexts:
                expected = reference_split(usage, ref, provider.id, at, context)
                if expected is None:
                    continue  # an earlier model of the provider claims this name
                tokens, other = expected
                cost = tt.price(usage, ref, provider.id, at=at, context=context)
                assert cost.priced, cost.reason
                assert cost.total_units == cost.non_token_units + (cost.total_units - cost.non_token_units)
                assert cost.non_token == sum(
                    (value for name, value in cost.components.items() if name in _non_token_names(cost)),
                    Decimal(0),
                )
                if rounding:  # an hourly rate per ms rounded once: each share within a yocto-dollar
                    assert cost.total == (tokens + other).quantize(YOCTO, rounding=ROUND_HALF_EVEN)
                    assert abs(cost.non_token - other) < YOCTO, f"{usage} at {at} with {context}"
                else:
                    assert (cost.total - cost.non_token, cost.non_token) == (tokens, other), (
                        f"{usage} at {at} with {context}"
                    )
                compared += 1
    assert compared


def _non_token_names(cost: Cost) -> set[str]:
    layout = cost._layout
    return {layout.names[i] for i in layout.non_token}


# -- worked by hand ----------------------------------------------------------------------------------


def test_perplexity_requests_and_web_searches_are_non_token() -> None:
    """perplexity/sonar-pro: $3/M input, $15/M output, and a per-request fee ($14 per thousand at the
    default search context)."""
    cost = tt.price(tt.Usage(1_000, 3_000, web_searches=2), "sonar-pro", "perplexity")
    assert cost.components == {
        "input": Decimal("0.003"),
        "output": Decimal("0.045"),
        "requests": Decimal("0.014"),
    }
    assert cost.non_token == Decimal("0.014")
    assert cost.total - cost.non_token == Decimal("0.048")


def test_openai_web_and_file_searches() -> None:
    """openai/gpt-4o: web searches $25 and file (storage) searches $2.50 per thousand."""
    cost = tt.price(tt.Usage(100_000, 1_000, web_searches=4, storage_searches=4), "gpt-4o", "openai")
    assert cost.components["web_searches"] + cost.components["storage_searches"] == cost.non_token
    assert cost.components["storage_searches"] == Decimal("0.01")
    assert cost.non_token == Decimal("0.01") + cost.components["web_searches"] > Decimal("0.01")
    assert cost.total - cost.non_token == cost.components["input"] + cost.components["output"]


def test_ocr_pages_are_the_whole_cost() -> None:
    cost = tt.price(
        tt.Usage(input_document_pages=1_000, input_annotated_document_pages=400),
        "mistral-ocr-latest",
        "mistral",
    )
    assert cost.priced and cost.total > 0
    assert cost.non_token == cost.total


def test_whisper_audio_hours_are_non_token() -> None:
    """openai/whisper-1: $0.36 an hour; 90.5 s cost $0.00905, none of it tokens."""
    cost = tt.price(tt.Usage(audio_ms=90_500, input_audio_ms=90_500), "whisper-1", "openai")
    assert cost.non_token == cost.total == Decimal("0.00905")


def test_a_token_only_price_has_no_non_token_share() -> None:
    cost = tt.price(tt.Usage(1_000, 500, reasoning_tokens=100), "gpt-4o", "openai")
    assert cost.non_token_units == 0 and cost.non_token == 0 and cost.total > 0
    assert tt.Cost.unpriced("no price").non_token == 0


def test_sums_keep_the_non_token_share() -> None:
    """Adding costs of one layout or of different layouts keeps which parts are not tokens."""
    searches = tt.price(tt.Usage(1_000, 100, web_searches=1), "gpt-4o", "openai")
    requests = tt.price(tt.Usage(1_000, 100), "sonar-pro", "perplexity")
    same = searches + searches
    assert same.non_token_units == 2 * searches.non_token_units
    mixed = searches + requests
    assert mixed.non_token_units == searches.non_token_units + requests.non_token_units
    assert mixed.total_units == searches.total_units + requests.total_units
    rule = PriceRule("p", "m", None, "test")
    hand = Cost(priced=True, rule=rule, layout=CostLayout(("input", "requests"), (1, 0), (1,)), parts=(5, 7))
    assert hand.non_token_units == 7 and hand.total_units == 12
