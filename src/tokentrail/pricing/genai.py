"""genai-prices' published data turned into tokentrail's snapshot: plain JSON data, prices as strings.

genai-prices publishes its catalog as a JSON array of providers (`prices/new_data/v2/data.json`, the file
its own updater fetches). Every catalog tokentrail uses goes through one function, `snapshot_from_published`:
the bundled `_data/prices.json.gz` (`make prices` dumps the installed, pinned genai-prices package to that
format with `published_providers()` first) and a catalog fetched by `tokentrail prices update`. The
conversion is plain Python; only `published_providers()` needs genai-prices. `import tokentrail` never
imports this module.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from tokentrail.errors import CatalogError
from tokentrail.pricing.extractors import extractors_data

__all__ = [
    "SNAPSHOT_FORMAT",
    "build_snapshot",
    "dumps_published",
    "loads_published",
    "published_providers",
    "snapshot_from_published",
]

SNAPSHOT_FORMAT = 1
_CLAUSE_KINDS = frozenset({"starts_with", "ends_with", "contains", "regex", "equals", "or", "and"})


# -- the published format → the snapshot (the one path) ------------------------------------------------


def snapshot_from_published(
    providers: Any, *, units: Sequence[Mapping[str, Any]], source: str, version: str
) -> dict[str, Any]:
    """The snapshot of a published provider list; `units` is the unit registry prices are read with.

    Raises `CatalogError` naming the first field that does not follow the published schema.
    """
    if not isinstance(providers, list) or not providers:
        raise CatalogError("expected a non-empty JSON array of providers")
    known_keys = {str(unit["price_key"]) for unit in units}
    return {
        "format": SNAPSHOT_FORMAT,
        "source": source,
        "version": version,
        "units": [dict(unit) for unit in units],
        "providers": [
            _provider(_mapping(raw, f"providers[{i}]"), f"providers[{i}]", known_keys)
            for i, raw in enumerate(providers)
        ],
    }


def _provider(raw: Mapping[str, Any], where: str, known_keys: set[str]) -> dict[str, Any]:
    where = f"{where} ({raw.get('id')!r})"
    pattern = (
        {"api_pattern": _pattern(raw["api_pattern"], f"{where}.api_pattern")} if "api_pattern" in raw else {}
    )
    return {
        **pattern,
        "id": _text(raw.get("id"), f"{where}.id"),
        "name": _text(raw.get("name"), f"{where}.name"),
        "model_match": _clause(raw.get("model_match"), f"{where}.model_match", optional=True),
        "provider_match": _clause(raw.get("provider_match"), f"{where}.provider_match", optional=True),
        "fallback_model_providers": _texts(raw.get("fallback_model_providers"), f"{where}.fallback"),
        "extractors": extractors_data(raw.get("extractors"), f"{where}.extractors"),
        "models": [
            _model(_mapping(m, f"{where}.models[{i}]"), f"{where}.models[{i}]", known_keys)
            for i, m in enumerate(_list(raw.get("models"), f"{where}.models"))
        ],
    }


def _model(raw: Mapping[str, Any], where: str, known_keys: set[str]) -> dict[str, Any]:
    where = f"{where} ({raw.get('id')!r})"
    prices = raw.get("prices")
    if isinstance(prices, list):
        if not prices:
            raise CatalogError(f"{where}.prices: an empty list of conditional prices")
        conditional = [
            {
                "constraint": _constraint(_mapping(c, f"{where}.prices[{i}]").get("constraint"), where),
                "prices": _prices(c.get("prices"), f"{where}.prices[{i}].prices", known_keys),
            }
            for i, c in enumerate(prices)
        ]
    else:
        conditional = [{"constraint": None, "prices": _prices(prices, f"{where}.prices", known_keys)}]
    context_window = raw.get("context_window")
    if context_window is not None and (type(context_window) is not int or context_window < 0):
        raise CatalogError(f"{where}.context_window: expected a whole number, got {context_window!r}")
    name = raw.get("name")
    return {
        "id": _text(raw.get("id"), f"{where}.id"),
        "name": None if name is None else _text(name, f"{where}.name"),
        "match": _clause(raw.get("match"), f"{where}.match", optional=False),
        "context_window": context_window,
        "deprecated": bool(raw.get("deprecated")),
        "prices": conditional,
        "variants": [
            {
                "when": _when(_mapping(v, f"{where}.price_variants[{i}]").get("when"), where),
                "constraint": _constraint(v.get("constraint"), where),
                "prices": _prices(v.get("prices"), f"{where}.price_variants[{i}].prices", known_keys),
            }
            for i, v in enumerate(_list(raw.get("price_variants") or [], f"{where}.price_variants"))
        ],
    }


def _prices(raw: Any, where: str, known_keys: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in _mapping(raw, where).items():
        if value is None:
            continue
        if key not in known_keys:
            raise CatalogError(f"{where}: unknown price unit {key!r} (this tokentrail cannot price it)")
        if isinstance(value, Mapping):
            tiers = _list(value.get("tiers"), f"{where}.{key}.tiers")
            out[key] = {
                "base": _price(value.get("base"), f"{where}.{key}.base"),
                "tiers": [
                    {
                        "start": _start(_mapping(t, f"{where}.{key}.tiers").get("start"), f"{where}.{key}"),
                        "price": _price(t.get("price"), f"{where}.{key}.tiers"),
                    }
                    for t in sorted(tiers, key=lambda t: t.get("start", 0) if isinstance(t, Mapping) else 0)
                ],
            }
        else:
            out[key] = _price(value, f"{where}.{key}")
    return out


def _price(value: Any, where: str) -> str:
    """A published price (a JSON number) as the exact decimal text genai-prices reads it as."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise CatalogError(f"{where}: expected a number, got {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise CatalogError(f"{where}: expected a number, got {value!r}") from None
    if not number.is_finite():
        raise CatalogError(f"{where}: expected a finite number, got {value!r}")
    if number < 0:
        raise CatalogError(f"{where}: negative price {value}")
    return str(number)


def _start(value: Any, where: str) -> int:
    if type(value) is not int or value < 0:
        raise CatalogError(f"{where}: a tier start must be a whole number of tokens, got {value!r}")
    return value


def _constraint(raw: Any, where: str) -> dict[str, str] | None:
    if raw is None:
        return None
    constraint = _mapping(raw, f"{where}.constraint")
    try:
        if "start_date" in constraint:
            start = constraint["start_date"]
            return {
                "start_date": (start if isinstance(start, date) else date.fromisoformat(start)).isoformat()
            }
        return {
            "start_time": _utc_time(constraint["start_time"]),
            "end_time": _utc_time(constraint["end_time"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"{where}.constraint: not a start date or a time window: {raw!r}") from exc


def _utc_time(value: Any) -> str:
    """A time of day as naive UTC ISO text ("00:30:00"); published values may carry an offset or "Z"."""
    moment: time
    if isinstance(value, time):
        moment = value
    else:
        text = str(value)
        moment = time.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if moment.tzinfo is not None:
        moment = datetime.combine(date(1970, 1, 1), moment).astimezone(timezone.utc).time()
    return moment.isoformat()


def _when(raw: Any, where: str) -> dict[str, str]:
    when = _mapping(raw, f"{where}.price_variants.when")
    if not when or not all(isinstance(k, str) and isinstance(v, str) for k, v in when.items()):
        raise CatalogError(f"{where}.price_variants.when: expected string keys and values, got {raw!r}")
    return dict(when)


def _clause(raw: Any, where: str, *, optional: bool) -> Any:
    if raw is None and optional:
        return None
    clause = _mapping(raw, where)
    if len(clause) != 1 or next(iter(clause)) not in _CLAUSE_KINDS:
        raise CatalogError(f"{where}: not a match clause: {raw!r}")
    ((kind, value),) = clause.items()
    if kind in ("or", "and"):
        return {kind: [_clause(c, where, optional=False) for c in _list(value, where)]}
    if kind == "regex":
        import re

        try:
            re.compile(value)
        except (re.error, TypeError) as exc:
            raise CatalogError(f"{where}: invalid regex {value!r}") from exc
    return {kind: _text(value, where)}


def _mapping(raw: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: expected an object, got {type(raw).__name__}")
    return raw


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise CatalogError(f"{where}: expected an array, got {type(raw).__name__}")
    return raw


def _text(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise CatalogError(f"{where}: expected a non-empty string, got {raw!r}")
    return raw


def _pattern(raw: Any, where: str) -> str:
    """A provider's `api_pattern`: a regular expression its API's base URLs match (from their start)."""
    text = _text(raw, where)
    try:
        re.compile(text)
    except re.error as exc:
        raise CatalogError(f"{where}: not a regular expression ({exc})") from None
    return text


def _texts(raw: Any, where: str) -> list[str] | None:
    if raw is None:
        return None
    return [_text(item, where) for item in _list(raw, where)]


# -- reading and writing the published JSON -------------------------------------------------------------


def loads_published(data: bytes) -> Any:
    """Parse published JSON, numbers as exact `Decimal`s (never through float); NaN/Infinity refused."""

    def refuse(name: str) -> Any:
        raise CatalogError(f"not valid JSON: {name} is not a number")

    try:
        return json.loads(data, parse_float=Decimal, parse_constant=refuse)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"not valid JSON ({exc})") from None


def dumps_published(providers: Any) -> bytes:
    """Published JSON of a provider list; `Decimal`s become JSON numbers that read back exactly."""

    def number(value: Any) -> Any:
        if isinstance(value, Decimal):
            if value == value.to_integral_value():
                return int(value)
            as_float = float(value)
            if not math.isfinite(as_float) or Decimal(repr(as_float)) != value:
                raise ValueError(f"price {value} cannot be written as an exact JSON number")
            return as_float
        if isinstance(value, (date, time)):
            return value.isoformat()
        raise TypeError(f"cannot write {type(value).__name__} as JSON")

    return json.dumps(providers, default=number, separators=(",", ":"), ensure_ascii=False).encode()


# -- the installed genai-prices package → the published format ------------------------------------------


def build_snapshot() -> dict[str, Any]:
    """The whole installed genai-prices catalog as JSON-ready data (what `make prices` ships)."""
    import genai_prices

    return snapshot_from_published(
        published_providers(), units=package_units(), source="genai-prices", version=genai_prices.__version__
    )


def package_units() -> list[dict[str, Any]]:
    """The installed genai-prices unit registry, in its order (input before output before caches)."""
    from genai_prices.data_units import unit_data

    return [
        {
            "usage_key": key,
            "price_key": raw.get("price_key", key),
            "per": raw["per"],
            "dimensions": raw["dimensions"],
        }
        for key, raw in unit_data.items()
    ]


def published_providers() -> list[dict[str, Any]]:
    """The installed genai-prices providers in the format genai-prices publishes (its `data.json`)."""
    from genai_prices.data import providers

    return [_dump_provider(p) for p in providers]


def _dump_provider(provider: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": provider.id, "name": provider.name}
    optional = ("pricing_urls", "api_pattern", "description", "price_comments")
    out |= {key: getattr(provider, key) for key in optional if getattr(provider, key, None) is not None}
    if provider.model_match is not None:
        out["model_match"] = _dump_clause(provider.model_match)
    if provider.provider_match is not None:
        out["provider_match"] = _dump_clause(provider.provider_match)
    if provider.extractors:
        out["extractors"] = [_dump_extractor(e) for e in provider.extractors]
    if provider.fallback_model_providers is not None:
        out["fallback_model_providers"] = list(provider.fallback_model_providers)
    out["models"] = [_dump_model(m) for m in provider.models]
    return out


def _dump_model(model: Any) -> dict[str, Any]:
    from genai_prices.types import ModelPrice

    out: dict[str, Any] = {"id": model.id}
    out |= {key: getattr(model, key) for key in ("name", "description") if getattr(model, key) is not None}
    out["match"] = _dump_clause(model.match)
    optional = ("context_window", "price_comments", "deprecated")
    out |= {key: getattr(model, key) for key in optional if getattr(model, key) is not None}
    if isinstance(model.prices, ModelPrice):
        out["prices"] = _dump_prices(model.prices)
    else:
        out["prices"] = [
            {"prices": _dump_prices(c.prices)}
            if c.constraint is None
            else {"constraint": _dump_constraint(c.constraint), "prices": _dump_prices(c.prices)}
            for c in model.prices
        ]
    if model.price_variants:
        out["price_variants"] = [
            {"when": dict(v.when), "prices": _dump_prices(v.prices)}
            | ({} if v.constraint is None else {"constraint": _dump_constraint(v.constraint)})
            for v in model.price_variants
        ]
    return out


def _dump_prices(model_price: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in model_price.__dict__.items():
        if key.startswith("_") or value is None:
            continue
        if isinstance(value, Decimal):
            out[key] = value
        else:  # TieredPrices
            out[key] = {
                "base": value.base,
                "tiers": [{"start": t.start, "price": t.price} for t in value.tiers],
            }
    return out


def _dump_constraint(constraint: Any) -> dict[str, str]:
    if hasattr(constraint, "start_date"):
        return {"start_date": constraint.start_date.isoformat()}
    return {"start_time": constraint.start_time.isoformat(), "end_time": constraint.end_time.isoformat()}


def _dump_extractor(extractor: Any) -> dict[str, Any]:
    return {
        "api_flavor": extractor.api_flavor,
        "root": _dump_path(extractor.root),
        "model_path": _dump_path(extractor.model_path),
        "mappings": [
            {"path": _dump_path(m.path), "dest": m.dest, "required": m.required} for m in extractor.mappings
        ],
    }


def _dump_path(path: Any) -> Any:
    if isinstance(path, str):
        return path
    return [
        item
        if isinstance(item, str)
        else {"type": item.type, "field": item.field, "match": _dump_clause(item.match)}
        for item in path
    ]


def _dump_clause(clause: Any) -> dict[str, Any]:
    name = type(clause).__name__
    if name == "ClauseOr":
        return {"or": [_dump_clause(c) for c in clause.or_]}
    if name == "ClauseAnd":
        return {"and": [_dump_clause(c) for c in clause.and_]}
    ((key, value),) = clause.__dict__.items()
    return {key: value}
