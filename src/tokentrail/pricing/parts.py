"""The parts of a stored cost that the record does not keep, recomputed from its price rule.

A ledger written before costs kept their non-token part (SQLite schema v9, Postgres v5) holds each
record's total and the price rule that made it, with the prices it applied. Compiling those prices again
and applying them to the stored usage gives the cost's parts; they are used only when they add up to the
stored total exactly, so the ledger is filled with what is known and nothing it would have to guess.
Stores know records, not prices: the tracker that opens such a ledger hands `RecomputedParts` to the
store's `fill_non_token` (`stores.base.NonTokenFillingStore`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tokentrail._types import PriceRule, Usage

if TYPE_CHECKING:
    from tokentrail._record import Record

__all__ = ["RecomputedParts", "non_token_of", "prices_non_token"]


@functools.cache
def _registry() -> Any:
    import gzip
    import json

    from tokentrail.pricing.catalog import _DATA_DIR
    from tokentrail.pricing.index import UnitRegistry

    with open(f"{_DATA_DIR}/prices.json.gz", "rb") as file:
        return UnitRegistry(json.loads(gzip.decompress(file.read()))["units"])


def prices_non_token(rule: PriceRule | None) -> bool:
    """Whether a rule's prices price a unit that is not tokens (requests, searches, durations, …)."""
    if rule is None or not rule.prices:
        return False
    units = _registry().by_price_key
    return any(key in units and not units[key].tokens for key in rule.prices)


def non_token_of(rule: PriceRule | None, usage: Usage, total_units: int) -> int:
    """The non-token part (10**-24 USD) of a cost of `total_units` that `rule` gave `usage`: its prices
    applied again, when they give that total exactly; else 0 (not known)."""
    if rule is None or not isinstance(rule.prices, Mapping):
        return 0
    found = _compiled.get(id(rule))
    if found is None or found[0] is not rule:
        from tokentrail.pricing.index import compile_prices

        try:
            found = (rule, compile_prices(_registry(), rule.prices, rule))
        except Exception:  # prices this tokentrail cannot compile: not known
            found = (rule, None)
        if len(_compiled) > 1024:
            _compiled.clear()
        _compiled[id(rule)] = found
    price_set = found[1]
    if price_set is None:
        return 0
    cost = price_set.cost(usage)
    return cost.non_token_units if cost.priced and cost.total_units == total_units else 0


_compiled: dict[int, tuple[PriceRule, Any]] = {}  # id(rule) → (rule, its compiled prices or None)


class RecomputedParts:
    """The non-token part of a stored cost, recomputed from the price rule that made it (the
    `stores.base.NonTokenParts` a store's `fill_non_token` takes)."""

    __slots__ = ()

    def may_have_part(self, rule: PriceRule | None) -> bool:
        return prices_non_token(rule)

    def part_of(self, record: Record) -> int:
        if record.cost_units is None:
            return 0
        return non_token_of(record.price_rule, record.usage, record.cost_units)
