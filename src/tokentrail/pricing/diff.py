"""What changed between two catalogs, model by model (`tokentrail prices diff`, `prices update`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelChange", "diff_catalogs"]


@dataclass(frozen=True)
class ModelChange:
    """One model added, removed or changed; `details` says what changed, one line each."""

    provider: str
    model: str
    kind: str  # "added", "removed" or "changed"
    details: tuple[str, ...] = field(default=())


def diff_catalogs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[ModelChange]:
    """Every model whose data differs between `old` and `new`, by provider then model id."""
    before, after = _models(old), _models(new)
    changes: list[ModelChange] = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            changes.append(ModelChange(*key, "removed"))
        elif key not in before:
            changes.append(ModelChange(*key, "added", _describe(after[key])))
        elif before[key] != after[key]:
            changes.append(ModelChange(*key, "changed", tuple(_changes(before[key], after[key]))))
    return changes


def _models(snapshot: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(p["id"], m["id"]): m for p in snapshot["providers"] for m in p["models"]}


def _price_sets(model: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    sets = {_when(None, entry.get("constraint")): entry["prices"] for entry in model["prices"]}
    for variant in model.get("variants", ()):
        sets[_when(variant["when"], variant.get("constraint"))] = variant["prices"]
    return sets


def _when(variant: Mapping[str, str] | None, constraint: Mapping[str, str] | None) -> str:
    parts = [f"{k}={v}" for k, v in sorted((variant or {}).items())]
    if constraint is None:
        parts.append("undated" if not parts else "")
    elif "start_date" in constraint:
        parts.append(f"from {constraint['start_date']}")
    else:
        parts.append(f"{constraint['start_time']}-{constraint['end_time']} UTC")
    return " ".join(p for p in parts if p)


def _describe(model: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(f"{label}: {_prices_text(prices)}" for label, prices in _price_sets(model).items())


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    old_sets, new_sets = _price_sets(old), _price_sets(new)
    for label in [*old_sets, *(k for k in new_sets if k not in old_sets)]:
        if label not in new_sets:
            lines.append(f"{label}: removed")
        elif label not in old_sets:
            lines.append(f"{label}: added {_prices_text(new_sets[label])}")
        elif old_sets[label] != new_sets[label]:
            was, now = old_sets[label], new_sets[label]
            moves = [
                f"{key} {_price_text(was.get(key))} → {_price_text(now.get(key))}"
                for key in [*was, *(k for k in now if k not in was)]
                if was.get(key) != now.get(key)
            ]
            lines.append(f"{label}: {', '.join(moves)}")
    for name, label in (("name", "name"), ("context_window", "context window"), ("deprecated", "deprecated")):
        if old.get(name) != new.get(name):
            lines.append(f"{label}: {old.get(name)} → {new.get(name)}")
    if old.get("match") != new.get("match"):
        lines.append("names it matches changed")
    return lines


def _prices_text(prices: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {_price_text(value)}" for key, value in prices.items()) or "no prices"


def _price_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        tiers = ", ".join(f">{t['start']}: {t['price']}" for t in value["tiers"])
        return f"{value['base']} ({tiers})"
    return str(value)
