"""Checks a new catalog passes before it may replace the one in force.

The published schema is checked while converting (`genai.snapshot_from_published`: types, no negative or
non-finite price, known price units). Here, against the catalogs it would replace:

- no absurd price: above `ABSURD_PRICE` USD per price unit (per million tokens, per thousand requests, per
  hour …; the dearest published price is a few hundred), or more than `JUMP` times the price it replaces
  (a misplaced decimal point);
- every model the reference catalogs price is still priced. A few removals (at most `REMOVAL_ALLOWANCE`
  models, or `REMOVAL_SHARE` of them) are an upstream edit and accepted, each listed; more, or a whole
  provider gone, means a broken or partial file and is refused unless removals are allowed explicitly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from tokentrail.errors import CatalogError

__all__ = ["ABSURD_PRICE", "JUMP", "REMOVAL_ALLOWANCE", "REMOVAL_SHARE", "check_catalog", "missing_models"]

ABSURD_PRICE = Decimal(10_000)
JUMP = 100
REMOVAL_ALLOWANCE = 5
REMOVAL_SHARE = Decimal("0.02")
_EXAMPLES = 5

ModelKey = tuple[str, str]


def check_catalog(
    candidate: Mapping[str, Any], references: Sequence[Mapping[str, Any]], *, allow_removals: bool = False
) -> list[ModelKey]:
    """Refuse `candidate` (`CatalogError`) when a check fails; returns the models it removes on purpose."""
    problems = list(_absurd_prices(candidate)) + list(_jumps(candidate, references))
    if problems:
        more = f" (and {len(problems) - _EXAMPLES} more)" if len(problems) > _EXAMPLES else ""
        raise CatalogError("absurd prices: " + "; ".join(problems[:_EXAMPLES]) + more)
    missing = missing_models(candidate, references)
    if not missing or allow_removals:
        return missing
    known = {key for reference in references for key in _priced(reference)}
    gone_providers = sorted({p for p, _ in known} - {p["id"] for p in candidate["providers"]})
    allowance = max(REMOVAL_ALLOWANCE, int(len(known) * REMOVAL_SHARE))
    if gone_providers or len(missing) > allowance:
        examples = ", ".join(f"{p}/{m}" for p, m in missing[:_EXAMPLES])
        what = f"providers {', '.join(gone_providers)} and " if gone_providers else ""
        raise CatalogError(
            f"the new catalog drops {what}{len(missing)} of the {len(known)} models the catalog in force"
            f" prices (e.g. {examples}): a partial or broken file? (--allow-removals installs it anyway)"
        )
    return missing


def missing_models(candidate: Mapping[str, Any], references: Sequence[Mapping[str, Any]]) -> list[ModelKey]:
    """(provider, model) of every model a reference prices that `candidate` does not, sorted."""
    have = set(_priced(candidate))
    return sorted({key for reference in references for key in _priced(reference)} - have)


def _priced(snapshot: Mapping[str, Any]) -> Iterator[ModelKey]:
    for provider in snapshot["providers"]:
        for model in provider["models"]:
            if any(entry["prices"] for entry in model["prices"]):
                yield provider["id"], model["id"]


def _price_sets(snapshot: Mapping[str, Any]) -> Iterator[tuple[ModelKey, str, Mapping[str, Any]]]:
    """((provider, model), label of the price set, its prices) for every price set and variant."""
    for provider in snapshot["providers"]:
        for model in provider["models"]:
            key = (provider["id"], model["id"])
            for entry in model["prices"]:
                yield key, _label(entry.get("constraint")), entry["prices"]
            for variant in model.get("variants", ()):
                when = ",".join(f"{k}={v}" for k, v in sorted(variant["when"].items()))
                yield key, f"{when} {_label(variant.get('constraint'))}", variant["prices"]


def _label(constraint: Mapping[str, str] | None) -> str:
    if constraint is None:
        return "undated"
    if "start_date" in constraint:
        return f"from {constraint['start_date']}"
    return f"{constraint['start_time']}-{constraint['end_time']} UTC"


def _amounts(value: Any) -> list[Decimal]:
    if isinstance(value, Mapping):
        return [Decimal(value["base"])] + [Decimal(t["price"]) for t in value["tiers"]]
    return [Decimal(str(value))]


def _absurd_prices(candidate: Mapping[str, Any]) -> Iterator[str]:
    for (provider, model), label, prices in _price_sets(candidate):
        for price_key, value in prices.items():
            worst = max(_amounts(value))
            if worst > ABSURD_PRICE:
                yield f"{provider}/{model} {price_key} {worst} ({label}) is above {ABSURD_PRICE}"


def _jumps(candidate: Mapping[str, Any], references: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    before: dict[tuple[ModelKey, str, str], Any] = {}
    for reference in references:
        for key, label, prices in _price_sets(reference):
            for price_key, value in prices.items():
                before[(key, label, price_key)] = value
    for key, label, prices in _price_sets(candidate):
        for price_key, value in prices.items():
            was = before.get((key, label, price_key))
            if was is None or was == value:  # most prices do not change: no arithmetic for them
                continue
            old, new = max(_amounts(was)), max(_amounts(value))
            if old and new > old * JUMP:
                yield f"{key[0]}/{key[1]} {price_key} {old} → {new} ({label}) is more than {JUMP}× the old price"
