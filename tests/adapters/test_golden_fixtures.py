"""Golden fixtures: documented provider payloads give exactly the expected Usage and Cost."""

from __future__ import annotations

from decimal import Decimal

import pytest
from adapter_payloads import (
    PROVIDER_DIRS,
    Fixture,
    all_fixtures,
    fixture_id,
    load,
    response_fixtures,
    stream_fixtures,
)

import tokentrail as tt
from tokentrail import Usage, UsageStatus
from tokentrail.adapters import Captured, capture, capture_stream, usage_from_response

RESPONSES = response_fixtures()
STREAMS = stream_fixtures()
MILLION = Decimal(1_000_000)


def captured_of(fixture: Fixture) -> Captured:
    if fixture.is_stream:
        return capture_stream(fixture.events(), fixture.capture_provider)
    return capture(fixture.payload, fixture.capture_provider)


def test_every_provider_has_a_response_and_a_stream_fixture() -> None:
    for provider in PROVIDER_DIRS:
        assert any(f.name.startswith(f"{provider}/") for f in RESPONSES), provider
        assert any(f.name.startswith(f"{provider}/") for f in STREAMS), provider


@pytest.mark.parametrize("fixture", list(all_fixtures()), ids=fixture_id)
def test_expected_usage_in_the_fixture_is_a_valid_usage(fixture: Fixture) -> None:
    assert fixture.expected_usage().status is UsageStatus.COMPLETE


@pytest.mark.parametrize("fixture", list(all_fixtures()), ids=fixture_id)
def test_capture_gives_the_expected_usage(fixture: Fixture) -> None:
    assert captured_of(fixture).usage == fixture.expected_usage()


@pytest.mark.parametrize("fixture", list(all_fixtures()), ids=fixture_id)
def test_capture_names_model_provider_and_price_variant(fixture: Fixture) -> None:
    captured = captured_of(fixture)
    assert captured.model == fixture.doc["expected_model"]
    assert captured.provider == fixture.doc["expected_provider"]
    assert dict(captured.price_context) == fixture.doc["expected_price_context"]


@pytest.mark.parametrize("fixture", RESPONSES, ids=fixture_id)
def test_provider_reported_cost_is_kept(fixture: Fixture) -> None:
    expected = fixture.doc["expected_provider_cost"]
    assert captured_of(fixture).provider_cost == (None if expected is None else Decimal(expected))


@pytest.mark.parametrize("fixture", list(all_fixtures()), ids=fixture_id)
def test_captured_usage_prices_to_the_expected_cost(fixture: Fixture) -> None:
    captured = captured_of(fixture)
    cost = tt.price(
        captured.usage,
        fixture.price_model,
        captured.provider,
        at=fixture.price_at,
        context=captured.price_context,
    )
    if fixture.expected_cost is None:
        assert not cost.priced
    else:
        assert cost.priced, cost.reason
        assert cost.total == fixture.expected_cost


@pytest.mark.parametrize("fixture", STREAMS, ids=fixture_id)
def test_stream_gives_the_same_usage_as_the_same_call_unstreamed(fixture: Fixture) -> None:
    provider_dir = fixture.name.split("/")[0]
    unstreamed = load(f"{provider_dir}/{fixture.doc['same_call_as']}")
    assert capture_stream(fixture.events(), fixture.capture_provider).usage == usage_from_response(
        unstreamed.payload, unstreamed.capture_provider
    )


@pytest.mark.parametrize("fixture", STREAMS, ids=fixture_id)
def test_stream_read_from_raw_wire_text_gives_the_same_usage(fixture: Fixture) -> None:
    from_text = capture_stream(fixture.wire_events(), fixture.capture_provider)
    from_bytes = capture_stream([e.encode() for e in fixture.wire_events()], fixture.capture_provider)
    assert from_text.usage == fixture.expected_usage()
    assert from_bytes.usage == fixture.expected_usage()


# Costs worked out by hand from the catalog's USD-per-million prices (genai-prices 0.2.3 snapshot,
# prices in force on 2026-11-01), independently of the pricing engine.
HAND_COSTS: dict[str, Decimal] = {
    # gpt-4o-mini: input 0.15, cached input 0.075, output 0.6
    "openai/chat_completion.json": (176 * Decimal("0.15") + 1024 * Decimal("0.075") + 300 * Decimal("0.6"))
    / MILLION,
    # o4-mini flex tier: input 0.55, cached input 0.138, output 2.2 (reasoning billed as output)
    "openai/chat_reasoning_flex.json": (
        464 * Decimal("0.55") + 1536 * Decimal("0.138") + 1800 * Decimal("2.2")
    )
    / MILLION,
    # gpt-audio: text in 2.5, audio in 32, text out 10, audio out 64
    "openai/chat_audio.json": (200 * Decimal("2.5") + 300 * 32 + 50 * 10 + 150 * 64) / MILLION,
    # gpt-5 priority tier: input 2.5, cached 0.25, output 20; web search $10 per thousand
    "openai/responses.json": (952 * Decimal("2.5") + 2048 * Decimal("0.25") + 1500 * 20) / MILLION
    + Decimal(10) / 1000,
    # gpt-4o-mini batch: input 0.075, output 0.3
    "openai/batch_output_line.json": (1000 * Decimal("0.075") + 200 * Decimal("0.3")) / MILLION,
    # claude-sonnet-4: input 3, cache read 0.3, cache write 5m 3.75, cache write 1h 6, output 15
    "anthropic/message_cache.json": (
        50 * 3 + 10000 * Decimal("0.3") + 500 * Decimal("3.75") + 1500 * 6 + 400 * 15
    )
    / MILLION,
    # claude-opus-4-1: input 15, output 75 (thinking included); two web searches at $10 per thousand
    "anthropic/message_thinking_web_search.json": (1200 * 15 + 3000 * 75) / MILLION + 2 * Decimal(10) / 1000,
    # claude-haiku-4-5 batch: input 0.5, output 2.5
    "anthropic/batch_result.json": (3000 * Decimal("0.5") + 500 * Decimal("2.5")) / MILLION,
    # gemini-2.5-flash: text in 0.3, cached text 0.03, audio in 1, cached audio 0.1, output 2.5 (thoughts included)
    "gemini/generate_content.json": (
        (1500 - 1024 - 300 + 200) * Decimal("0.3")
        + (1024 - 200) * Decimal("0.03")
        + (300 - 200) * 1
        + 200 * Decimal("0.1")
        + (200 + 800) * Decimal("2.5")
    )
    / MILLION,
    # gemini-2.5-pro above 200k prompt tokens: input 2.5, output 15; tool-use prompt billed as input
    "gemini/tool_use_long_prompt.json": ((210000 + 1000) * Decimal("2.5") + (500 + 1500) * 15) / MILLION,
    # Claude Sonnet 4 on Bedrock: input 3, cache read 0.3, cache write 3.75, output 15
    "bedrock/converse_cache.json": (20 * 3 + 4000 * Decimal("0.3") + 1000 * Decimal("3.75") + 300 * 15)
    / MILLION,
    # command-a: input 2.5, output 10, on billed units
    "cohere/chat_v2.json": (65 * Decimal("2.5") + 420 * 10) / MILLION,
}


@pytest.mark.parametrize("name", sorted(HAND_COSTS))
def test_fixture_cost_matches_hand_arithmetic(name: str) -> None:
    assert load(name).expected_cost == HAND_COSTS[name]


def test_unknown_usage_is_unpriced_never_zero() -> None:
    captured = capture({"object": "chat.completion", "model": "gpt-4o", "usage": None})
    assert captured.usage == Usage.unknown(captured.usage.reason or "")
    assert not tt.price(captured.usage, "gpt-4o", captured.provider).priced
