"""Every unit the bundled catalog prices is carried by `Usage` and priced as genai-prices prices it.

For every model whose price set (any dated price or request variant) prices a unit beyond input and
output tokens — characters, text messages, audio durations, document pages, file searches, citation and
cached video tokens, … — random usages carrying every unit at once are priced by `tt.price` and by
genai-prices' `calc_price` on the same catalog (the bundled snapshot is built from the pinned package):
the totals and their input/output split are equal to the digit. The one exception is an hourly price
applied to whole milliseconds whose per-millisecond rate falls between two yocto-dollars (e.g. $0.111 an
hour): tokentrail then rounds the call's duration cost to the nearest 10**-24 USD, genai-prices to 28
significant digits, and the test requires our total to be theirs rounded to 10**-24 USD (and the input and
output parts to be within 10**-24 USD of theirs).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from genai_prices.data import providers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokentrail as tt
from tests.pricing.test_golden_genai_prices import model_ref, request_times
from tokentrail._types import TOKEN_FIELDS
from tokentrail.errors import InvalidUsageError
from tokentrail.pricing.index import USAGE_ATTRS, USAGE_SCALE

SNAPSHOT = json.loads(gzip.decompress((Path(tt.__file__).parent / "_data" / "prices.json.gz").read_bytes()))
UNITS = {u["usage_key"]: u for u in SNAPSHOT["units"]}
BY_PRICE_KEY = {u["price_key"]: u for u in SNAPSHOT["units"]}
# The units priced before Usage carried every unit: models pricing only these are the golden suite's.
FIRST_UNITS = {
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_reasoning_tokens",
    "input_audio_tokens",
    "cache_audio_read_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "cache_image_read_tokens",
    "output_image_tokens",
    "input_video_tokens",
    "output_video_tokens",
    "web_searches",
    "requests",
}
YOCTO = Decimal(1).scaleb(-24)


def price_sets(model: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for entry in model["prices"]:
        yield entry["prices"]
    for variant in model.get("variants", ()):
        yield variant["prices"]


def catalog_usage_keys() -> dict[str, set[str]]:
    """Every usage key some bundled price set prices → the provider:model ids that price it."""
    keys: dict[str, set[str]] = {}
    for provider in SNAPSHOT["providers"]:
        for model in provider["models"]:
            for prices in price_sets(model):
                for price_key in prices:
                    keys.setdefault(BY_PRICE_KEY[price_key]["usage_key"], set()).add(
                        f"{provider['id']}:{model['id']}"
                    )
    return keys


def test_usage_carries_every_unit_the_catalog_prices() -> None:
    """A catalog (this one or a future one) pricing a unit Usage cannot hold must fail here, not price it
    as $0 silently."""
    carried = set(USAGE_ATTRS) | {"requests"}
    missing = {key: sorted(models)[:3] for key, models in catalog_usage_keys().items() if key not in carried}
    assert not missing, f"the catalog prices units a Usage does not carry: {missing}"


def test_every_carried_count_is_a_priced_unit_of_the_registry() -> None:
    assert set(USAGE_ATTRS) <= set(UNITS)
    assert sorted(USAGE_ATTRS.values()) == sorted(n for n in TOKEN_FIELDS if n != "requests")
    assert set(USAGE_SCALE) <= set(USAGE_ATTRS.values())


def nested_pairs() -> Iterator[tuple[str, str]]:
    """(ancestor, descendant) usage keys both carried by Usage, by genai-prices' unit dimensions."""
    for a in USAGE_ATTRS:
        for d in USAGE_ATTRS:
            da, dd = UNITS[a]["dimensions"].items(), UNITS[d]["dimensions"].items()
            if a != d and da <= dd:
                yield a, d


@pytest.mark.parametrize(("ancestor", "descendant"), list(nested_pairs()))
def test_usage_keeps_every_nesting_of_the_registry(ancestor: str, descendant: str) -> None:
    """A count genai-prices nests in another (cached video in video input, input audio in all audio, …)
    may not exceed it: Usage refuses what calc_price would refuse."""
    ancestors = [a for a, d in nested_pairs() if d == descendant]
    whole: dict[str, Any] = {USAGE_ATTRS[a]: 1 for a in ancestors} | {USAGE_ATTRS[descendant]: 1}
    tt.Usage(**whole)  # every ancestor holds the one unit: valid
    with pytest.raises(InvalidUsageError, match=f"cannot exceed {USAGE_ATTRS[ancestor]}"):
        tt.Usage(**(whole | {USAGE_ATTRS[ancestor]: 0}))


# -- random usages carrying every unit ----------------------------------------------------------------


def maybe(high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.just(0), st.integers(1, high))


@st.composite
def full_usages(draw: Any) -> tt.Usage:
    c_audio, c_image, c_video, c_text = (
        draw(maybe(5000)),
        draw(maybe(5000)),
        draw(maybe(5000)),
        draw(maybe(90_000)),
    )
    u_audio, u_image, u_video = draw(maybe(5000)), draw(maybe(5000)), draw(maybe(5000))
    cache_write, text = draw(maybe(20_000)), draw(maybe(250_000))
    out = {k: draw(maybe(4000)) for k in ("reasoning", "audio", "image", "video", "citation", "text")}
    in_ms, out_ms, other_ms = draw(maybe(10**7)), draw(maybe(10**7)), draw(maybe(10**6))
    pages = draw(maybe(3000))
    return tt.Usage(
        input_tokens=c_audio + c_image + c_video + c_text + u_audio + u_image + u_video + cache_write + text,
        output_tokens=sum(out.values()),
        cache_read_tokens=c_audio + c_image + c_video + c_text,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=draw(st.integers(0, cache_write)),
        reasoning_tokens=out["reasoning"],
        input_audio_tokens=c_audio + u_audio,
        cache_audio_read_tokens=c_audio,
        output_audio_tokens=out["audio"],
        input_image_tokens=c_image + u_image,
        cache_image_read_tokens=c_image,
        output_image_tokens=out["image"],
        input_video_tokens=c_video + u_video,
        cache_video_read_tokens=c_video,
        output_video_tokens=out["video"],
        output_citation_tokens=out["citation"],
        web_searches=draw(maybe(30)),
        input_characters=draw(maybe(10**6)),
        input_text_messages=draw(maybe(500)),
        audio_ms=in_ms + out_ms + other_ms,
        input_audio_ms=in_ms,
        output_audio_ms=out_ms,
        input_document_pages=pages,
        input_annotated_document_pages=draw(st.integers(0, pages)),
        input_pixels=draw(maybe(10**9)),
        storage_searches=draw(maybe(30)),
        code_executions=draw(maybe(30)),
        social_searches=draw(maybe(30)),
        rerank_searches=draw(maybe(30)),
    )


def as_genai_usage(usage: tt.Usage) -> genai_prices.Usage:
    """The same usage in genai-prices' keys; durations in seconds (exact Decimals with 3 decimals)."""
    values: dict[str, Any] = {}
    for key, attr in USAGE_ATTRS.items():
        count = getattr(usage, attr)
        scale = USAGE_SCALE.get(attr, 1)
        values[key] = count if scale == 1 else Decimal(count) / scale
    return genai_prices.Usage(**values)


def rounds_durations(prices: Mapping[str, Any]) -> bool:
    """Whether an hourly price of this set is a fraction of a yocto-dollar per millisecond."""
    for price_key, raw in prices.items():
        unit = BY_PRICE_KEY[price_key]
        scale = USAGE_SCALE.get(USAGE_ATTRS.get(unit["usage_key"], ""), 1)
        if scale == 1:
            continue
        for price in [raw["base"], *(t["price"] for t in raw["tiers"])] if isinstance(raw, dict) else [raw]:
            if (Fraction(Decimal(str(price))) * 10**24 / (unit["per"] * scale)).denominator != 1:
                return True
    return False


def new_unit_cases() -> Iterator[Any]:
    snapshot_models = {(p["id"], m["id"]): m for p in SNAPSHOT["providers"] for m in p["models"]}
    for provider in providers:
        for model in provider.models:
            raw = snapshot_models[(provider.id, model.id)]
            keys = {BY_PRICE_KEY[k]["usage_key"] for prices in price_sets(raw) for k in prices}
            if keys - FIRST_UNITS:
                rounding = any(rounds_durations(prices) for prices in price_sets(raw))
                yield pytest.param(provider, model, rounding, id=f"{provider.id}:{model.id}")


CASES = list(new_unit_cases())


def test_the_cases_cover_every_new_unit_of_the_catalog() -> None:
    priced_new = {key for key in catalog_usage_keys() if key not in FIRST_UNITS}
    assert priced_new >= {"audio_seconds", "input_characters", "input_document_pages", "storage_searches"}
    assert len(CASES) >= 60


@pytest.mark.parametrize(("provider", "model", "rounding"), CASES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(usage=full_usages())
def test_price_equals_calc_price_on_every_unit(
    provider: Any, model: Any, rounding: bool, usage: tt.Usage
) -> None:
    ref = model_ref(model)
    contexts: list[dict[str, str] | None] = [None, *(dict(v.when) for v in model.price_variants or ())]
    compared = 0
    for at in request_times(model):
        for context in contexts:
            ours = tt.price(usage, ref, provider.id, at=at, context=context)
            try:
                theirs = genai_prices.calc_price(
                    as_genai_usage(usage),
                    ref,
                    provider_id=provider.id,
                    genai_request_timestamp=at,
                    price_context=context,
                )
            except LookupError:
                continue  # an earlier model of the provider claims this name (the golden suite covers names)
            assert ours.priced, ours.reason
            assert ours.model == theirs.model.id
            if rounding:  # the total rounded once; each direction within a yocto-dollar of theirs
                assert ours.total == theirs.total_price.quantize(YOCTO, rounding=ROUND_HALF_EVEN)
                assert abs(ours.input - theirs.input_price) < YOCTO, f"{usage} at {at} with {context}"
                assert abs(ours.output - theirs.output_price) < YOCTO, f"{usage} at {at} with {context}"
            else:
                assert (ours.total, ours.input, ours.output) == (
                    theirs.total_price,
                    theirs.input_price,
                    theirs.output_price,
                ), f"{usage} at {at} with {context}"
            assert sum(ours.components.values()) == ours.total
            compared += 1
    assert compared, f"genai-prices finds no model for {ref!r}"


# -- single cases, worked by hand ----------------------------------------------------------------------


def test_durations_are_priced_per_millisecond() -> None:
    """openai/whisper-1: $0.36 an hour (audio_hours and input_audio_hours): 90.5 s cost $0.00905."""
    usage = tt.Usage(audio_ms=90_500, input_audio_ms=90_500)
    cost = tt.price(usage, "whisper-1", "openai")
    assert (
        cost.total
        == Decimal("0.00905")
        == genai_prices.calc_price(as_genai_usage(usage), "whisper-1", provider_id="openai").total_price
    )


def test_groq_whisper_bills_at_least_ten_seconds() -> None:
    """genai-prices bills Groq's whisper-large-v3 a minimum of 10 s a call ($0.111 an hour)."""
    short, ten = (
        tt.Usage(audio_ms=3_000, input_audio_ms=3_000),
        tt.Usage(audio_ms=10_000, input_audio_ms=10_000),
    )
    assert (
        tt.price(short, "whisper-large-v3", "groq").total
        == tt.price(ten, "whisper-large-v3", "groq").total
        > 0
    )
    assert tt.price(tt.Usage(audio_ms=0), "whisper-large-v3", "groq").total == 0
    theirs = genai_prices.calc_price(
        as_genai_usage(short), "whisper-large-v3", provider_id="groq"
    ).total_price
    assert tt.price(short, "whisper-large-v3", "groq").total == theirs.quantize(
        YOCTO, rounding=ROUND_HALF_EVEN
    )


def test_citation_tokens_are_priced_apart_from_output() -> None:
    """perplexity/sonar-deep-research prices citation tokens at $2/M, output at $8/M."""
    usage = tt.Usage(1000, 3000, output_citation_tokens=2000)
    cost = tt.price(usage, "sonar-deep-research", "perplexity")
    assert cost.components["output_citation"] == Decimal("0.004")
    assert cost.components["output"] == Decimal("0.008")


def test_file_searches_and_pages_are_priced() -> None:
    searches = tt.price(tt.Usage(100, 10, storage_searches=4), "gpt-4o", "openai")
    assert searches.components["storage_searches"] == Decimal("0.01")  # $2.50 per thousand
    ocr = tt.price(
        tt.Usage(input_document_pages=10, input_annotated_document_pages=4), "mistral-ocr-latest", "mistral"
    )
    assert ocr.priced and ocr.total > 0


def test_user_prices_for_every_new_kind() -> None:
    """set_price takes a price for each new unit in the catalog's own unit (per hour, per thousand, …)."""
    from tokentrail.pricing.catalog import Catalog
    from tokentrail.pricing.overrides import parse_env

    catalog = Catalog.from_snapshot()
    catalog.set_price(
        "my-speech",
        input="1",
        output="2",
        audio_hours="0.36",
        input_audio_hours="0.72",
        input_characters="15",
        storage_searches="2.5",
        input_document_pages="1",
        input_pixels="3",
        citation="2",
    )
    usage = tt.Usage(
        1_000_000,
        1_000_000,
        output_citation_tokens=500_000,
        audio_ms=3_600_000,
        input_audio_ms=1_800_000,
        input_characters=2_000_000,
        storage_searches=4,
        input_document_pages=1000,
        input_pixels=10**9,
    )
    cost = catalog.price(usage, "my-speech")
    assert cost.priced, cost.reason
    assert cost.components == {
        "input": Decimal(1),
        "output": Decimal(1),  # 500k plain output tokens at $2/M
        "output_citation": Decimal(1),
        "input_characters": Decimal(30),
        "audio_seconds": Decimal("0.18"),  # the half hour that is not input audio, at $0.36 an hour
        "input_audio_seconds": Decimal("0.36"),
        "input_pixels": Decimal(3),
        "input_document_pages": Decimal(1),
        "storage_searches": Decimal("0.01"),
    }
    [env] = parse_env({"TOKENTRAIL_PRICES__MY_SPEECH__AUDIO_HOURS": "0.111"})
    assert env.prices == {"audio_hours": "0.111"}
