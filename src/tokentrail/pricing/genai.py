"""Turn genai-prices' catalog objects into tokentrail's snapshot: plain JSON data, prices as strings.

Used by `make prices` to write `_data/prices.json.gz`, and at run time only when a user asks for the
installed genai-prices data (`Catalog.from_genai_prices()`). `import tokentrail` never imports this.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

__all__ = ["SNAPSHOT_FORMAT", "build_snapshot"]

SNAPSHOT_FORMAT = 1


def build_snapshot() -> dict[str, Any]:
    """The whole installed genai-prices catalog as JSON-ready data."""
    import genai_prices
    from genai_prices.data import providers
    from genai_prices.data_units import unit_data

    return {
        "format": SNAPSHOT_FORMAT,
        "source": "genai-prices",
        "version": genai_prices.__version__,
        "units": [  # a list: the registry's order (input before output before caches) is kept
            {
                "usage_key": key,
                "price_key": raw.get("price_key", key),
                "per": raw["per"],
                "dimensions": raw["dimensions"],
            }
            for key, raw in unit_data.items()
        ],
        "providers": [_provider(p) for p in providers],
    }


def _provider(provider: Any) -> dict[str, Any]:
    return {
        "id": provider.id,
        "name": provider.name,
        "model_match": _clause(provider.model_match),
        "provider_match": _clause(provider.provider_match),
        "fallback_model_providers": provider.fallback_model_providers,
        "models": [_model(m) for m in provider.models],
    }


def _model(model: Any) -> dict[str, Any]:
    from genai_prices.types import ModelPrice

    if isinstance(model.prices, ModelPrice):
        prices = [{"constraint": None, "prices": _prices(model.prices)}]
    else:
        prices = [
            {"constraint": _constraint(c.constraint), "prices": _prices(c.prices)} for c in model.prices
        ]
    return {
        "id": model.id,
        "name": model.name,
        "match": _clause(model.match),
        "context_window": model.context_window,
        "deprecated": bool(model.deprecated),
        "prices": prices,
        "variants": [
            {"when": dict(v.when), "constraint": _constraint(v.constraint), "prices": _prices(v.prices)}
            for v in model.price_variants or ()
        ],
    }


def _prices(model_price: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in model_price.__dict__.items():
        if key.startswith("_") or value is None:
            continue
        if isinstance(value, Decimal):
            out[key] = str(value)
        else:  # TieredPrices
            out[key] = {
                "base": str(value.base),
                "tiers": [{"start": t.start, "price": str(t.price)} for t in value.tiers],
            }
    return out


def _constraint(constraint: Any) -> dict[str, str] | None:
    if constraint is None:
        return None
    if hasattr(constraint, "start_date"):
        start: date = constraint.start_date
        return {"start_date": start.isoformat()}
    return {"start_time": _utc_time(constraint.start_time), "end_time": _utc_time(constraint.end_time)}


def _utc_time(value: time) -> str:
    if value.tzinfo is not None:
        value = datetime.combine(date(1970, 1, 1), value).astimezone(timezone.utc).time()
    return value.isoformat()


def _clause(clause: Any) -> Any:
    if clause is None:
        return None
    name = type(clause).__name__
    if name == "ClauseOr":
        return {"or": [_clause(c) for c in clause.or_]}
    if name == "ClauseAnd":
        return {"and": [_clause(c) for c in clause.and_]}
    ((key, value),) = clause.__dict__.items()
    return {key: value}
