"""Per-model rates as users of other trackers know them: USD per million input / output tokens.

Rates are read from a `Catalog` by pricing a fixed number of tokens with `price()`, so presets and
custom rates are the catalog's own prices, never numbers copied into code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tokentrail._types import Usage
from tokentrail.pricing.catalog import Catalog

__all__ = ["COST_PRESETS", "ModelRate", "new_catalog", "rate_of"]

# Familiar preset names → catalog model ids (the prices themselves come from the catalog).
COST_PRESETS: Mapping[str, str] = {
    "gpt-4o-mini": "gpt-4o-mini",
    "gpt-4o": "gpt-4o",
    "claude-sonnet": "claude-sonnet-4-5",
    "gemini-flash": "gemini-2.5-flash",
}

_SAMPLE = 1000  # tokens priced to read a rate: far below any long-context tier


@dataclass(frozen=True)
class ModelRate:
    """USD per million tokens of one model (`None`: the catalog cannot price it)."""

    model: str
    input_per_million: Decimal | None
    output_per_million: Decimal | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_per_million": _text(self.input_per_million),
            "output_per_million": _text(self.output_per_million),
        }


def rate_of(catalog: Catalog, model: str) -> ModelRate:
    """The base-tier input and output rate `catalog` prices `model` at."""
    name = COST_PRESETS.get(model, model)
    per_input = catalog.price(Usage(input_tokens=_SAMPLE, output_tokens=0), name)
    per_output = catalog.price(Usage(input_tokens=0, output_tokens=_SAMPLE), name)
    scale = Decimal(1_000_000 // _SAMPLE)
    return ModelRate(
        model,
        _plain(per_input.total * scale) if per_input.priced else None,
        _plain(per_output.total * scale) if per_output.priced else None,
    )


def new_catalog(custom_costs: Mapping[str, Mapping[str, Any]] | None = None) -> Catalog:
    """A private catalog: the shipped prices, the user's environment prices, then `custom_costs`.

    `custom_costs` maps a model name to prices in USD per million tokens, e.g.
    {"my-model": {"input": "0.5", "output": "1.5"}} (any `Catalog.set_price` keyword).
    """
    from tokentrail.pricing.overrides import parse_env

    catalog = Catalog.from_snapshot()
    path = os.environ.get("TOKENTRAIL_PRICES_FILE")
    if path:
        catalog.load(path)
    catalog.add_overrides(parse_env(os.environ))
    for model, prices in (custom_costs or {}).items():
        catalog.set_price(model, **dict(prices))
    return catalog


def _plain(value: Decimal) -> Decimal:
    return Decimal(format(value.normalize(), "f"))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
