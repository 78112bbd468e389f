"""Where analytics read from: a `Tracker` or any `Store`, through their public query API."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from tokentrail._money import UNITS_PER_USD, units_to_decimal
from tokentrail._record import Record, SummaryRow, to_timestamp_us
from tokentrail.stores.base import Query, Store

if TYPE_CHECKING:
    from tokentrail.tracker import Tracker

__all__ = ["fraction_usd", "history", "summary", "units_fraction"]


def _query(since: datetime | date | None, until: datetime | date | None, filters: dict[str, Any]) -> Query:
    return Query.build(
        filters,
        None if since is None else to_timestamp_us(since),
        None if until is None else to_timestamp_us(until),
    )


def summary(
    source: Tracker | Store,
    by: tuple[str, ...],
    since: datetime | date | None,
    until: datetime | date | None,
    filters: dict[str, Any],
) -> list[SummaryRow]:
    """Totals grouped `by` over [since, until) from a tracker (its whole tree) or a store."""
    if isinstance(source, Store):
        return source.summary(_query(since, until, filters), by)
    return source.summary(by, since, until, **filters)


def history(
    source: Tracker | Store,
    since: datetime | date | None,
    until: datetime | date | None,
    filters: dict[str, Any],
) -> list[Record]:
    if isinstance(source, Store):
        return source.history(_query(since, until, filters))
    return source.history(since, until, **filters)


def units_fraction(units: int | Fraction) -> Fraction:
    """Yocto-dollars (a whole or fractional count) as an exact USD fraction."""
    return Fraction(units, UNITS_PER_USD)


def fraction_usd(value: Fraction) -> Decimal:
    """An exact USD fraction as a Decimal, rounded half-even to the ledger's yocto-dollar."""
    return units_to_decimal(round(value * UNITS_PER_USD))
