"""`TokenCounter` and `CostEstimator`: the familiar names for counting and pricing before a call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from tokentrail._types import Usage
from tokentrail.compat.rates import COST_PRESETS, ModelRate, new_catalog, rate_of
from tokentrail.pricing.catalog import Catalog

__all__ = ["CostEstimator", "TokenCounter"]


class TokenCounter:
    """Counts tokens offline for `model` (exact for OpenAI encodings, estimated otherwise)."""

    def __init__(self, model: str = "gpt-4o") -> None:
        self.model = model

    def count(self, text: str, model: str | None = None) -> int:
        from tokentrail.tokens.count import count_tokens

        return count_tokens(text, model or self.model)

    def count_messages(self, messages: Iterable[Mapping[str, Any]], model: str | None = None) -> int:
        """Tokens of OpenAI-style chat messages, message overhead included."""
        from tokentrail.tokens.count import count_tokens

        return count_tokens(list(messages), model or self.model)


class CostEstimator:
    """Prices token counts with the catalog plus rates set here (`set_rate`), env vars and `custom_costs`.

    It owns a private catalog, so `set_rate` never changes prices elsewhere in the process.
    """

    def __init__(
        self,
        custom_costs: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        catalog: Catalog | None = None,
    ) -> None:
        self.catalog = catalog if catalog is not None else new_catalog(custom_costs)
        self._custom: set[str] = set(custom_costs or {})

    def estimate(self, model: str, input_tokens: int, output_tokens: int = 0) -> Decimal:
        """Exact USD for the tokens; raises `UnknownModelError` for a model nobody priced."""
        name = COST_PRESETS.get(model, model)
        return self.catalog.price(
            Usage(input_tokens=input_tokens, output_tokens=output_tokens), name, strict=True
        ).total

    def get_rate(self, model: str) -> ModelRate:
        return rate_of(self.catalog, model)

    def set_rate(self, model: str, input: Decimal | str | int, output: Decimal | str | int) -> ModelRate:
        """Price `model` at `input` / `output` USD per million tokens."""
        self.catalog.set_price(model, input=input, output=output)
        self._custom.add(model)
        return self.get_rate(model)

    def get_all_rates(self) -> dict[str, ModelRate]:
        """The presets and every model given a rate here, by name."""
        return {name: self.get_rate(name) for name in (*COST_PRESETS, *sorted(self._custom))}
