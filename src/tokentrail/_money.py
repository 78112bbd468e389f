"""Money as exact integers: every cost is a whole number of yocto-dollars (10**-24 USD).

Catalog prices have up to 18 decimal places per million tokens, so a per-token rate in yocto-dollars
is always an integer and sums stay exact without Decimal arithmetic on the hot path. Decimal values
are built only when a caller reads them.
"""

from __future__ import annotations

from decimal import Context, Decimal

__all__ = ["SCALE", "UNITS_PER_USD", "decimal_to_units", "units_to_decimal"]

SCALE = 24
UNITS_PER_USD = 10**SCALE
_EXACT = Context(prec=1000)


def units_to_decimal(units: int) -> Decimal:
    """Exact USD value of `units` yocto-dollars, without trailing zeros after the decimal point."""
    if units == 0:
        return Decimal(0)
    value = Decimal(units).scaleb(-SCALE, _EXACT)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1), context=_EXACT)
    return value.normalize(_EXACT)


def decimal_to_units(usd: Decimal, per: int = 1, *, what: str = "price") -> int:
    """`usd / per` in yocto-dollars; raises ValueError when that is not a whole number of units."""
    scaled = usd.scaleb(SCALE, _EXACT) / per if per != 1 else usd.scaleb(SCALE, _EXACT)
    units = int(scaled)
    if Decimal(units) != scaled:
        raise ValueError(f"{what} {usd} has more decimal places than tokentrail can hold exactly")
    return units
