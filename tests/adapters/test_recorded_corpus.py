"""Real responses nobody here wrote: bodies recorded by public test suites (VCR cassettes, recorded JSON), each
named by repository, commit and path (tests/fixtures/recorded/<provider>/*.json, format in the README there).

For each body, `usage_from_response(body, provider)` must equal genai-prices' `extract_usage` count for count
(the oracle the catalog's prices are written for), and the price of what tokentrail reads must equal
genai-prices' `calc_price` of what it reads, to the digit. Where the two differ, the difference is listed
below with its reason (docs/providers.md), and asserted as exactly that difference: a body that stops
differing must leave the list. Where genai-prices has no reader, tokentrail must still read the body.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from adapter_payloads import genai_prices_carried, in_genai_prices_keys

import tokentrail as tt
from tokentrail import UsageStatus
from tokentrail.adapters import capture, capture_stream, usage_from_response

genai_prices = pytest.importorskip("genai_prices")
from genai_prices.data import providers as GENAI_PROVIDERS  # noqa: E402

PROVIDERS = {provider.id: provider for provider in GENAI_PROVIDERS}

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
CORPUS = sorted(ROOT.rglob("*.json"))
IDS = [str(path.relative_to(ROOT).with_suffix("")) for path in CORPUS]
AT = datetime(2026, 11, 1, tzinfo=timezone.utc)  # prices as of a fixed day: no wall clock


def _tool_calls(body: dict[str, Any]) -> dict[str, int]:
    """The Responses output items of built-in tools OpenAI bills per call: a `web_search_call` that ran a
    search (an `open_page` or `find_in_page` action reads a page a search found) and a `file_search_call`."""
    calls = {"web_searches": 0, "storage_searches": 0}
    for item in body["output"]:
        if item.get("type") == "web_search_call":
            calls["web_searches"] += (item.get("action") or {}).get("type", "search") == "search"
        calls["storage_searches"] += item.get("type") == "file_search_call"
    return calls


def _plus_tool_calls(body: dict[str, Any], theirs: dict[str, Any] | None) -> dict[str, Any]:
    assert theirs is not None
    return {**theirs, **{key: count for key, count in _tool_calls(body).items() if count}}


def _plus_grounding(body: dict[str, Any], theirs: dict[str, Any] | None) -> dict[str, Any]:
    """Google bills Gemini 1.x/2.x grounding per grounded prompt, later models per unique non-empty search
    query (https://ai.google.dev/gemini-api/docs/pricing)."""
    assert theirs is not None
    queries = {
        query
        for candidate in body["candidates"]
        for query in candidate.get("groundingMetadata", {}).get("webSearchQueries", [])
        if query
    }
    per_prompt = body["modelVersion"].startswith(("gemini-1", "gemini-2"))
    return {**theirs, "web_searches": min(len(queries), 1) if per_prompt else len(queries)}


def _plus_server_searches(body: dict[str, Any], theirs: dict[str, Any] | None) -> dict[str, Any]:
    """OpenRouter's server tools report their web searches in `usage.server_tool_use_details`."""
    assert theirs is not None
    return {**theirs, "web_searches": body["usage"]["server_tool_use_details"]["web_search_requests"]}


def _plus_hidden_thinking(body: dict[str, Any], theirs: dict[str, Any] | None) -> dict[str, Any]:
    """Gemini's OpenAI-compatible endpoint counts the thinking in `total_tokens` alone."""
    assert theirs is not None
    usage = body["usage"]
    hidden = usage["total_tokens"] - usage["prompt_tokens"] - usage["completion_tokens"]
    return {**theirs, "output_tokens": usage["completion_tokens"] + hidden, "output_reasoning_tokens": hidden}


def _cohere_billed(body: dict[str, Any], theirs: dict[str, Any] | None) -> dict[str, Any]:
    assert theirs is None
    billed = body["meta"]["billed_units"]
    names = {
        "input_tokens": "input_tokens",
        "output_tokens": "output_tokens",
        "search_units": "rerank_searches",
    }
    return {names[key]: value for key, value in billed.items() if value}


TOOL_CALLS = "Responses web and file search calls are billed per call (docs/providers.md, the table)"
GROUNDING = (
    "Gemini's Google Search grounding is billed per prompt or per query (docs/providers.md, the table)"
)
SERVER_SEARCHES = (
    "OpenRouter's server tools' web searches are billed per search (docs/providers.md, the table)"
)
HIDDEN_THINKING = "Gemini's OpenAI-compatible endpoint counts thinking in its total alone (docs/providers.md)"
NO_COHERE_READER = "genai-prices reads no Cohere v1 chat nor rerank body; tokentrail reads meta.billed_units"
# Bodies read differently from genai-prices: id -> (why, tokentrail's reading in genai-prices' keys worked out
# from the body and genai-prices' reading by that rule). Each reason is in docs/providers.md.
DIFFERENCES: dict[str, tuple[str, Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]]] = {
    "openai/responses_web_search_preview": (TOOL_CALLS, _plus_tool_calls),
    "openai/responses_web_search_4_calls_reasoning": (TOOL_CALLS, _plus_tool_calls),
    "openai/responses_file_search_call": (TOOL_CALLS, _plus_tool_calls),
    "x-ai/responses_web_search": (TOOL_CALLS, _plus_tool_calls),
    "google/generate_google_search_grounding": (GROUNDING, _plus_grounding),
    "openrouter/chat_web_search_cost": (SERVER_SEARCHES, _plus_server_searches),
    "google/openai_compat_chat_thinking_only_in_total": (HIDDEN_THINKING, _plus_hidden_thinking),
    "cohere/chat_v1_meta_billed_units": (NO_COHERE_READER, _cohere_billed),
    "cohere/rerank_v1_search_units": (NO_COHERE_READER, _cohere_billed),
}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _extracted(fixture: dict[str, Any]) -> tuple[str | None, Any] | None:
    """What genai-prices' extractor for the fixture's provider and flavor reads from the body (the model name
    and its Usage, as `extract_usage` reads them before looking the model up), or None when it cannot."""
    oracle = fixture["genai_prices"]
    if oracle is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, usage = PROVIDERS[oracle["provider_id"]].extract_usage(
                fixture["response"], api_flavor=oracle["api_flavor"]
            )
    except ValueError:
        return None
    return model, usage


def _their_price(fixture: dict[str, Any], usage: Any = None) -> Any:
    """genai-prices' `calc_price` of what it reads (or of `usage`, a genai-prices Usage), for the body's model
    (or the one its request named); None when it reads nothing or finds no such model."""
    extracted = _extracted(fixture)
    model = None if extracted is None else extracted[0] or fixture.get("model")
    if extracted is None or model is None:
        return None
    try:
        return genai_prices.calc_price(
            extracted[1] if usage is None else usage,
            model,
            provider_id=fixture["genai_prices"]["provider_id"],
            genai_request_timestamp=AT,
        )
    except LookupError:
        return None


def test_the_corpus_covers_many_providers_and_sources() -> None:
    fixtures = [_load(path) for path in CORPUS]
    assert len(fixtures) >= 40
    assert len({path.parent.name for path in CORPUS}) >= 10
    assert len({fixture["source"]["repo"] for fixture in fixtures}) >= 4
    priced = [fixture for fixture in fixtures if _their_price(fixture) is not None]
    assert len(priced) >= 30  # bodies whose price is compared below


@pytest.mark.parametrize("path", CORPUS, ids=IDS)
def test_each_body_names_where_it_was_recorded(path: Path) -> None:
    fixture = _load(path)
    source = fixture["source"]
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", source["repo"])
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert source["path"] and source["at"] and fixture["note"]
    assert fixture["provider"] == path.parent.name
    assert isinstance(fixture["edits"], list)
    assert isinstance(fixture["response"], dict)


@pytest.mark.parametrize("path", CORPUS, ids=IDS)
def test_usage_equals_genai_prices(path: Path) -> None:
    fixture = _load(path)
    body, provider = fixture["response"], fixture["provider"]
    ours = usage_from_response(body, provider)
    assert capture(body, provider).usage == ours  # the two public calls read alike
    extracted = _extracted(fixture)
    theirs = None if extracted is None else genai_prices_carried(extracted[1])
    key = str(path.relative_to(ROOT).with_suffix(""))
    if key in DIFFERENCES:
        _, rule = DIFFERENCES[key]
        assert ours.status is UsageStatus.COMPLETE, ours.reason
        expected = rule(body, theirs)
        assert expected != theirs, "no longer a difference: take it off DIFFERENCES"
        assert in_genai_prices_keys(ours) == expected
        return
    assert ours.status is UsageStatus.COMPLETE, ours.reason
    assert theirs is not None, "genai-prices cannot read this body: list it in DIFFERENCES with the reason"
    assert in_genai_prices_keys(ours) == theirs


@pytest.mark.parametrize("path", CORPUS, ids=IDS)
def test_price_equals_genai_prices(path: Path) -> None:
    fixture = _load(path)
    captured = capture(fixture["response"], fixture["provider"])
    key = str(path.relative_to(ROOT).with_suffix(""))
    # a documented difference: genai-prices prices tokentrail's reading (its units in genai-prices' keys)
    usage = genai_prices.Usage(**in_genai_prices_keys(captured.usage)) if key in DIFFERENCES else None
    theirs = _their_price(fixture, usage)
    if theirs is None:
        return  # nothing to compare with: genai-prices reads no usage, or finds no price for the model
    provider = fixture["genai_prices"]["provider_id"]  # the provider genai-prices priced it as
    ours = tt.price(captured.usage, captured.model or fixture["model"], provider, AT)
    assert ours.priced, ours.reason
    assert ours.total == theirs.total_price


# What a provider's usage says the call cost (kept as `provider_cost`, beside the catalog's price), worked out
# from the body by each provider's documented unit.
REPORTED: dict[str, Callable[[dict[str, Any]], Decimal]] = {
    "openrouter": lambda usage: Decimal(str(usage["cost"])),  # credits of one USD
    "x-ai": lambda usage: Decimal(usage["cost_in_usd_ticks"]) / 10**10,  # ticks of 1e-10 USD
    "perplexity": lambda usage: Decimal(str(usage["cost"]["total_cost"])),  # USD
}


def _reported(fixture: dict[str, Any]) -> Decimal | None:
    read = REPORTED.get(fixture["provider"])
    try:
        return None if read is None else read(fixture["response"].get("usage") or {})
    except KeyError:
        return None


def test_some_bodies_report_what_they_cost() -> None:
    assert len([path for path in CORPUS if _reported(_load(path)) is not None]) >= 3


@pytest.mark.parametrize("path", CORPUS, ids=IDS)
def test_the_cost_the_provider_reports_is_kept(path: Path) -> None:
    fixture = _load(path)
    body, provider = fixture["response"], fixture["provider"]
    expected = _reported(fixture)
    assert capture(body, provider).provider_cost == expected
    if expected is not None and "choices" in body:  # the same usage as a stream's last chunk
        chunk = {
            "object": "chat.completion.chunk",
            "model": body["model"],
            "choices": [],
            "usage": body["usage"],
        }
        assert capture_stream([chunk], provider).provider_cost == expected
