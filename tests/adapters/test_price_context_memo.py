"""Instrumented calls price with the response's context ({"service_tier": "default"} on every OpenAI
call); the catalog remembers that choice per context, and the remembered price is the one a fresh
lookup gives."""

from __future__ import annotations

import pytest

from tokentrail import Usage
from tokentrail.pricing.catalog import Catalog

USAGE = Usage(input_tokens=1_200, output_tokens=300, cache_read_tokens=200, reasoning_tokens=50)
CONTEXTS = [
    {"service_tier": "default"},
    {"service_tier": "flex"},
    {"service_tier": "priority"},
    {"service_tier": "auto"},
    {"processing": "batch"},
    {"service_tier": "flex", "processing": "batch"},
    {},
]
MODELS = [("gpt-4o-mini", "openai"), ("gpt-5", "openai"), ("o3", None), ("claude-sonnet-4-5", "anthropic")]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_snapshot()


@pytest.mark.parametrize(("model", "provider"), MODELS)
@pytest.mark.parametrize("context", CONTEXTS, ids=repr)
def test_a_remembered_context_prices_like_a_fresh_lookup(
    catalog: Catalog, model: str, provider: str | None, context: dict[str, str]
) -> None:
    fresh = Catalog.from_snapshot()
    match = fresh.resolve(model, provider)
    assert match is not None
    expected = match.select(None, context).cost(USAGE)
    first = catalog.price(USAGE, model, provider, context=context)
    again = catalog.price(USAGE, model, provider, context=dict(context))
    assert first == expected
    assert again == expected
    assert again.rule == expected.rule  # the variant that matched is named the same way


def test_the_default_tier_is_named_in_the_price_rule(catalog: Catalog) -> None:
    cost = catalog.price(USAGE, "gpt-4o-mini", "openai", context={"service_tier": "default"})
    assert cost == catalog.price(USAGE, "gpt-4o-mini", "openai", context={"service_tier": "default"})
    assert cost.rule is not None and ("service_tier", "default") in cost.rule.variant


def test_an_override_added_later_is_not_hidden_by_a_remembered_context(catalog: Catalog) -> None:
    local = Catalog.from_snapshot()
    before = local.price(USAGE, "gpt-4o-mini", "openai", context={"service_tier": "flex"})
    local.set_price("gpt-4o-mini", "openai", input=100, output=100)
    after = local.price(USAGE, "gpt-4o-mini", "openai", context={"service_tier": "flex"})
    assert after != before


def test_unhashable_context_values_are_still_priced(catalog: Catalog) -> None:
    context: dict[str, object] = {"service_tier": "default", "tags": ["a"]}
    expected = catalog.price(USAGE, "gpt-4o-mini", "openai", context={"service_tier": "default"})
    assert catalog.price(USAGE, "gpt-4o-mini", "openai", context=context) == expected  # type: ignore[arg-type]


def test_a_remembered_choice_ends_when_a_dated_variant_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from tokentrail.pricing import catalog as catalog_module

    local = Catalog.from_snapshot()
    match = local.resolve("gpt-4o-mini", "openai")
    assert match is not None
    starts = sorted(c.start_us for _, c, _ in match.model.variants if c is not None)
    assert starts, "gpt-4o-mini has dated variants in the snapshot"
    before, after = starts[0] - 1, starts[0]
    clock = {"now": before}
    monkeypatch.setattr(catalog_module, "time", types.SimpleNamespace(time_ns=lambda: clock["now"] * 1000))
    context = {"service_tier": "priority"}
    assert local.price(USAGE, "gpt-4o-mini", "openai", context=context) == match.select(before, context).cost(
        USAGE
    )
    clock["now"] = after
    priced_after = local.price(USAGE, "gpt-4o-mini", "openai", context=context)
    assert priced_after == match.select(after, context).cost(USAGE)
    assert priced_after.rule != match.select(before, context).cost(USAGE).rule
