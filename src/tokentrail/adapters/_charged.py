"""What a response says the provider charged for the call, kept as the capture's `provider_cost` beside
the catalog's price (reports show both and their difference; the catalog's price stays the record's cost).

Three providers report it in the usage of their responses (JSON bodies, SDK objects, the usage chunk of a
stream):
- OpenRouter: `usage.cost`, in credits of one USD (https://openrouter.ai/docs/use-cases/usage-accounting);
  it includes what the catalog may not price (the web plugin's results, BYOK fees).
- xAI: `usage.cost_in_usd_ticks`, an integer of 10⁻¹⁰ USD (https://docs.x.ai, "consumption and rate limits").
- Perplexity: `usage.cost.total_cost` in USD, the request fee for the search context size included, which the
  catalog can only take at its highest (https://docs.perplexity.ai, "pricing").
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from tokentrail.adapters._base import get_field, reported_cost
from tokentrail.pricing.names import PROVIDER_ALIASES

__all__ = ["REPORTERS", "USD_TICK", "charged"]

USD_TICK = Decimal(1).scaleb(-10)  # xAI's `cost_in_usd_ticks` unit: 1 tick = 1e-10 USD


def _openrouter(usage: object) -> Decimal | None:
    return reported_cost(get_field(usage, "cost"))


def _xai(usage: object) -> Decimal | None:
    ticks = get_field(usage, "cost_in_usd_ticks")
    if isinstance(ticks, str) and ticks.isdigit():  # protobuf JSON writes int64 values as strings
        ticks = int(ticks)
    return ticks * USD_TICK if type(ticks) is int and ticks >= 0 else None


def _perplexity(usage: object) -> Decimal | None:
    cost = get_field(usage, "cost")
    return reported_cost(get_field(cost, "total_cost")) if cost is not None else None


_READERS: dict[str, Callable[[object], Decimal | None]] = {
    "openrouter": _openrouter,
    "perplexity": _perplexity,
    **{
        name: _xai
        for name, catalog_id in (*PROVIDER_ALIASES.items(), ("x-ai", "x-ai"))
        if catalog_id == "x-ai"
    },
}

REPORTERS = frozenset(_READERS)  # the provider names whose usage may report a cost


def charged(usage: object, provider: str) -> Decimal | None:
    """The cost a response's `usage` object reports the provider (by its canonical name or an alias of it)
    charged, or None when it reports none."""
    read = _READERS.get(provider)
    return None if read is None or usage is None else read(usage)
