"""The exception tree: catch `TokentrailError` for everything, or any branch below it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "AdapterError",
    "BudgetExceeded",
    "CatalogError",
    "InvalidPriceError",
    "InvalidUsageError",
    "PricingError",
    "StoreError",
    "TokentrailError",
    "UnknownModelError",
]


class TokentrailError(Exception):
    """Base class of every error tokentrail raises on purpose."""


class InvalidUsageError(TokentrailError, ValueError):
    """A `Usage` was built from values that cannot be token counts (negative, non-integer, inconsistent)."""


class PricingError(TokentrailError, ValueError):
    """Pricing could not be done as asked (bad model name, timestamp or request context)."""


class InvalidPriceError(PricingError):
    """A user-supplied price (override, file, environment variable) is malformed."""


class CatalogError(PricingError):
    """A price catalog (fetched, or found in the cache) is malformed or fails validation; the catalog
    in force stays in force."""


class UnknownModelError(PricingError, LookupError):
    """No price is known for the model; raised only when pricing is strict.

    `close_matches` lists catalog model names that look similar, best first.
    """

    def __init__(self, message: str, *, model: str, provider: str | None, close_matches: list[str]) -> None:
        super().__init__(message)
        self.model = model
        self.provider = provider
        self.close_matches = close_matches


class BudgetExceeded(TokentrailError):
    """A hard budget refused a call: the one error tracking raises into user code by design.

    Says which budget refused (`budget`, its `window` and `scope`), what it had counted (`spent`,
    `reserved`), its `limit`, what the call asked for (`requested`) and when the window starts afresh
    (`resets_at`, None for windows that never reset). Amounts are `Decimal` USD when `unit` is "usd"
    and token counts when it is "tokens". `reason` explains refusals that are not about the amount
    (an unpriced model under `on_unpriced="fail_closed"`).
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        budget: str | None = None,
        window: str | None = None,
        spent: Decimal | int | None = None,
        reserved: Decimal | int | None = None,
        limit: Decimal | int | None = None,
        requested: Decimal | int | None = None,
        resets_at: datetime | None = None,
        scope: Mapping[str, str] | None = None,
        unit: str = "usd",
        reason: str | None = None,
    ) -> None:
        self.budget = budget
        self.window = window
        self.spent = spent
        self.reserved = reserved
        self.limit = limit
        self.requested = requested
        self.resets_at = resets_at
        self.scope: dict[str, str] = dict(scope or {})
        self.unit = unit
        self.reason = reason
        super().__init__(message if message is not None else self._describe())

    @property
    def remaining(self) -> Decimal | int | None:
        """What was left before the refused call (never negative), when the amounts are known."""
        if self.limit is None or self.spent is None:
            return None
        left = self.limit - self.spent - (self.reserved or 0)
        return left if left > 0 else type(left)(0)

    def _describe(self) -> str:
        where = f"budget {self.budget!r}" if self.budget else "a budget"
        if self.window:
            where += f" ({self.window})"
        if self.reason:
            text = f"{where} refused the call: {self.reason}"
        elif self.limit is None:
            text = f"{where} refused the call"
        else:
            show = _usd if self.unit == "usd" else _tokens
            text = (
                f"{where} would pass its limit: spent {show(self.spent)} + reserved {show(self.reserved)}"
                f" + requested {show(self.requested)} > limit {show(self.limit)}"
            )
        if self.resets_at is not None:
            text += f"; resets at {self.resets_at.isoformat()}"
        return text

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields (amounts as strings, times as ISO 8601), e.g. for an HTTP 402 body."""
        return {
            "error": "budget_exceeded",
            "message": str(self),
            "budget": self.budget,
            "window": self.window,
            "scope": self.scope,
            "unit": self.unit,
            "spent": _plain(self.spent),
            "reserved": _plain(self.reserved),
            "limit": _plain(self.limit),
            "requested": _plain(self.requested),
            "remaining": _plain(self.remaining),
            "resets_at": self.resets_at.isoformat() if self.resets_at is not None else None,
            "reason": self.reason,
        }

    def __reduce__(self) -> tuple[Any, ...]:  # keep the fields across pickling (multiprocessing)
        return (_rebuild_budget_exceeded, (str(self), self.__dict__.copy()))


def _rebuild_budget_exceeded(message: str, fields: dict[str, Any]) -> BudgetExceeded:
    error = BudgetExceeded(message)
    error.__dict__.update(fields)
    return error


def _usd(amount: Decimal | int | None) -> str:
    return "$0" if amount is None else f"${amount}"


def _tokens(amount: Decimal | int | None) -> str:
    return f"{amount or 0} tokens"


def _plain(amount: Decimal | int | None) -> str | int | None:
    if amount is None or isinstance(amount, int):
        return amount
    return str(amount)


class StoreError(TokentrailError):
    """A usage store could not be opened, read or written."""


class AdapterError(TokentrailError):
    """A provider response could not be read in a strict API."""
