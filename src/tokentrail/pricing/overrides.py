"""User prices and aliases: from code, from a TOML/JSON file, and from environment variables.

Prices are USD per million tokens or characters, per thousand searches, code executions, messages or
document pages, per hour of audio, per billion pixels and per request for `request` (the catalog's own
units, see `PRICE_KINDS`), given as strings, ints or Decimals (floats are read through their shortest
repr). An explicit 0 is a real price. Environment variables (read when the default catalog is first used):

    TOKENTRAIL_PRICES_FILE=/path/prices.toml
    TOKENTRAIL_PRICES__<MODEL>__<KIND>=<usd>   e.g. TOKENTRAIL_PRICES__GPT_4O__INPUT=2.5

<MODEL> is compared by slug (lowercase, every run of other characters as `_`), so GPT_4O names gpt-4o.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tokentrail._money import decimal_to_units
from tokentrail.errors import InvalidPriceError
from tokentrail.pricing.names import slug

__all__ = ["PRICE_KINDS", "Alias", "PriceOverride", "parse_env", "parse_file", "parse_price"]

# Override keyword → catalog price key (genai-prices' names).
PRICE_KINDS: dict[str, str] = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
    "reasoning": "output_reasoning_mtok",
    "input_audio": "input_audio_mtok",
    "cache_audio_read": "cache_audio_read_mtok",
    "output_audio": "output_audio_mtok",
    "input_image": "input_image_mtok",
    "cache_image_read": "cache_image_read_mtok",
    "output_image": "output_image_mtok",
    "input_video": "input_video_mtok",
    "output_video": "output_video_mtok",
    "web_searches": "web_searches_kcount",
    "request": "requests_kcount",
    "cache_video_read": "cache_video_read_mtok",
    "citation": "output_citation_mtok",
    "input_characters": "input_mchars",
    "input_text_messages": "input_text_messages_kcount",
    "audio_hours": "audio_hours",
    "input_audio_hours": "input_audio_hours",
    "output_audio_hours": "output_audio_hours",
    "input_document_pages": "input_document_kpages",
    "input_annotated_document_pages": "input_annotated_document_kpages",
    "input_pixels": "input_gpixels",
    "storage_searches": "storage_searches_kcount",
    "code_executions": "code_executions_kcount",
    "social_searches": "social_searches_kcount",
    "rerank_searches": "rerank_searches_kcount",
}
# How many units one price is for, by the price key's suffix (genai-prices' unit registry).
_PER = {"_mtok": 1_000_000, "_mchars": 1_000_000, "_kcount": 1000, "_kpages": 1000, "_gpixels": 10**9}
_ENV_PREFIX = "TOKENTRAIL_PRICES__"


@dataclass(frozen=True)
class PriceOverride:
    """User prices for one model (optionally one provider), keyed by catalog price key."""

    model: str
    provider: str | None
    prices: Mapping[str, str] = field(default_factory=dict)
    origin: str = "code"

    @classmethod
    def build(cls, model: str, provider: str | None, origin: str = "code", **kinds: Any) -> PriceOverride:
        if not isinstance(model, str) or not model.strip():
            raise InvalidPriceError(f"a price override needs a model name, got {model!r} ({origin})")
        prices: dict[str, str] = {}
        for kind, value in kinds.items():
            if value is None:
                continue
            if kind not in PRICE_KINDS:
                known = ", ".join(PRICE_KINDS)
                raise InvalidPriceError(f"unknown price kind {kind!r} for {model} ({origin}); known: {known}")
            amount = parse_price(value, f"{kind} price of {model} ({origin})")
            if kind == "request":  # per request → the catalog's per-thousand-requests unit
                amount *= 1000
            price_key = PRICE_KINDS[kind]
            per = next((n for suffix, n in _PER.items() if price_key.endswith(suffix)), None)
            try:
                if per is not None:  # an hourly price is applied per millisecond, rounded to 10**-24 USD
                    decimal_to_units(amount, per)
            except ValueError:
                raise InvalidPriceError(
                    f"{kind} price of {model} ({origin}) {value} cannot be held exactly"
                ) from None
            prices[price_key] = str(amount)
        if not prices:
            raise InvalidPriceError(f"price override for {model} ({origin}) sets no price")
        return cls(model=model, provider=provider, prices=prices, origin=origin)

    @property
    def key(self) -> tuple[str, str | None]:
        return slug(self.model), self.provider.lower() if self.provider else None


@dataclass(frozen=True)
class Alias:
    """A name (e.g. an Azure deployment) that stands for a catalog model."""

    name: str
    model: str
    provider: str | None = None


def parse_price(value: object, what: str) -> Decimal:
    """A finite, non-negative Decimal from a str/int/float/Decimal, or InvalidPriceError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise InvalidPriceError(f"{what} must be a number, got {value!r}")
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidPriceError(f"{what} must be a number, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidPriceError(f"{what} must be a finite, non-negative number, got {value!r}")
    return amount


def parse_file(path: str | os.PathLike[str]) -> tuple[list[PriceOverride], list[Alias]]:
    """Read prices and aliases from TOML (`.toml`) or JSON.

    [[price]]                      # or {"price": [...], "alias": {...}} in JSON
    model = "my-model"
    provider = "azure"             # optional
    input = "0.50"                 # USD per million tokens
    output = "1.50"

    [alias]
    my-gpt4o-deployment = { model = "gpt-4o", provider = "azure" }
    """
    file = Path(path)
    origin = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidPriceError(f"cannot read price file {origin}: {exc.strerror or exc}") from None
    try:
        data = _load_toml(text) if file.suffix.lower() == ".toml" else json.loads(text)
    except ValueError as exc:
        raise InvalidPriceError(
            f"price file {origin} is not valid {file.suffix.lstrip('.') or 'JSON'}: {exc}"
        ) from None
    if not isinstance(data, Mapping):
        raise InvalidPriceError(f"price file {origin} must hold a table/object at the top level")
    unknown = set(data) - {"price", "alias"}
    if unknown:
        raise InvalidPriceError(f"price file {origin}: unknown section(s) {', '.join(sorted(unknown))}")
    overrides = []
    for entry in _as_list(data.get("price", []), origin, "price"):
        body = dict(entry)
        model = body.pop("model", None)
        provider = body.pop("provider", None)
        overrides.append(PriceOverride.build(model, provider, origin, **body))
    aliases = []
    for name, target in dict(data.get("alias", {})).items():
        if isinstance(target, str):
            aliases.append(Alias(name, target))
        elif isinstance(target, Mapping) and isinstance(target.get("model"), str):
            aliases.append(Alias(name, target["model"], target.get("provider")))
        else:
            raise InvalidPriceError(f"price file {origin}: alias {name!r} must name a model")
    return overrides, aliases


def parse_env(environ: Mapping[str, str]) -> list[PriceOverride]:
    """Overrides from TOKENTRAIL_PRICES__<MODEL>__<KIND> variables, one per model."""
    by_model: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(_ENV_PREFIX):
            continue
        model, sep, kind = name[len(_ENV_PREFIX) :].rpartition("__")
        if not sep or not model or kind.lower() not in PRICE_KINDS:
            known = ", ".join(k.upper() for k in PRICE_KINDS)
            raise InvalidPriceError(
                f"environment variable {name}: expected {_ENV_PREFIX}<MODEL>__<KIND>, KIND one of {known}"
            )
        by_model.setdefault(model, {})[kind.lower()] = value
    return [PriceOverride.build(model, None, "environment", **kinds) for model, kinds in by_model.items()]


def _as_list(value: Any, origin: str, section: str) -> list[Mapping[str, Any]]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(i, Mapping) for i in items):
        raise InvalidPriceError(f"price file {origin}: each [{section}] entry must be a table")
    return items


def _load_toml(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    return tomllib.loads(text)
