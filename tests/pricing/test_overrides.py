"""User prices from code, files and environment variables; aliases for deployment names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import tokentrail as tt
from tokentrail.pricing.catalog import Catalog, default_catalog, set_default_catalog
from tokentrail.pricing.overrides import parse_env

USAGE = tt.Usage(input_tokens=1_000_000, output_tokens=1_000_000, cache_read_tokens=400_000)


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.from_snapshot()


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    set_default_catalog(None)
    yield
    set_default_catalog(None)


def test_override_prices_an_unknown_model(catalog: Catalog) -> None:
    catalog.set_price("acme-llm", input="0.5", output=2)
    cost = catalog.price(USAGE, "acme-llm")
    assert cost.priced
    # no cache_read price given: cached tokens fall back to the input price
    assert cost.total == Decimal("0.5") + Decimal(2)
    assert cost.rule is not None and cost.rule.source == "override (code)"


def test_override_wins_over_catalog_and_keeps_unset_kinds(catalog: Catalog) -> None:
    catalog.set_price("gpt-4o", output="8")
    cost = catalog.price(USAGE, "gpt-4o-2024-08-06")
    # input $2.50 × 0.6M + cached $1.25 × 0.4M from the catalog, output from the override
    assert cost.total == Decimal("1.5") + Decimal("0.5") + Decimal("8")


def test_explicit_zero_is_honoured(catalog: Catalog) -> None:
    catalog.set_price("gpt-4o", input=0, output=0, cache_read=0)
    cost = catalog.price(USAGE, "gpt-4o")
    assert cost.priced and cost.total == 0


def test_provider_specific_override_beats_the_generic_one(catalog: Catalog) -> None:
    catalog.set_price("gpt-4o", input="1", output="1", cache_read="1")
    catalog.set_price("gpt-4o", provider="azure", input="3", output="3", cache_read="3")
    assert catalog.price(USAGE, "gpt-4o", "azure").total == Decimal(6)
    assert catalog.price(USAGE, "gpt-4o").total == Decimal(2)


def test_alias_maps_a_deployment_name(catalog: Catalog) -> None:
    catalog.alias("prod-chat-deployment", "gpt-4o-mini", provider="azure")
    cost = catalog.price(USAGE, "prod-chat-deployment")
    assert (cost.provider, cost.model) == ("azure", "gpt-4o-mini")


def test_toml_file(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        """
[[price]]
model = "acme-llm"
input = "0.25"
output = 1.5
cache_read = "0.025"

[alias]
chat-prod = { model = "gpt-4o", provider = "azure" }
"""
    )
    catalog.load(path)
    assert catalog.price(USAGE, "acme-llm").total == Decimal("0.15") + Decimal("0.01") + Decimal("1.5")
    assert catalog.price(USAGE, "chat-prod").provider == "azure"


def test_json_file(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps({"price": [{"model": "acme", "provider": "acme-cloud", "input": "1", "output": "1"}]})
    )
    catalog.load(path)
    assert catalog.price(USAGE, "acme", "acme-cloud").total == Decimal(2)
    assert not catalog.price(USAGE, "acme", "other-cloud").priced


def test_environment_variables(fresh_default: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTRAIL_PRICES__ACME_LLM__INPUT", "0.5")
    monkeypatch.setenv("TOKENTRAIL_PRICES__ACME_LLM__OUTPUT", "1")
    assert tt.price(USAGE, "acme-llm").total == Decimal("1.5")
    assert default_catalog().overrides()[0].origin == "environment"


def test_prices_file_from_environment(
    fresh_default: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"price": {"model": "zeta", "input": "2", "output": "2"}}))
    monkeypatch.setenv("TOKENTRAIL_PRICES_FILE", str(path))
    assert tt.price(USAGE, "zeta").total == Decimal(4)


def test_per_request_and_web_search_prices(catalog: Catalog) -> None:
    catalog.set_price("search-bot", input="0", output="0", request="0.002", web_searches="10")
    cost = catalog.price(tt.Usage(10, 10, web_searches=3), "search-bot")
    assert cost.components["requests"] == Decimal("0.002")
    assert cost.components["web_searches"] == Decimal("0.03")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input": "-1"}, "non-negative"),
        ({"input": "abc"}, "must be a number"),
        ({"input": float("nan")}, "finite"),
        ({"input": True}, "must be a number"),
        ({"inptu": "1"}, "unknown price kind"),
        ({}, "sets no price"),
        ({"input": "0.0000000000000000001"}, "cannot be held exactly"),
    ],
)
def test_bad_prices_are_rejected_clearly(catalog: Catalog, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(tt.InvalidPriceError, match=message):
        catalog.set_price("acme", **kwargs)
        catalog.price(USAGE, "acme", strict=True)


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("[[price]]\nmodel = 'x'\ninput = ", ".toml", "not valid toml"),
        ("{", ".json", "not valid"),
        ("[]", ".json", "top level"),
        ('{"prices": []}', ".json", "unknown section"),
        ('{"price": [{"input": "1"}]}', ".json", "needs a model"),
    ],
)
def test_bad_files_are_rejected_clearly(
    catalog: Catalog, tmp_path: Path, text: str, suffix: str, message: str
) -> None:
    path = tmp_path / f"prices{suffix}"
    path.write_text(text)
    with pytest.raises(tt.InvalidPriceError, match=message):
        catalog.load(path)


def test_missing_file(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(tt.InvalidPriceError, match="cannot read price file"):
        catalog.load(tmp_path / "absent.toml")


def test_bad_environment_variable_names_the_variable() -> None:
    with pytest.raises(tt.InvalidPriceError, match="TOKENTRAIL_PRICES__GPT4__COST"):
        parse_env({"TOKENTRAIL_PRICES__GPT4__COST": "1"})
