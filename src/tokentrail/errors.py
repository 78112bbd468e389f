"""The exception tree: catch `TokentrailError` for everything, or any branch below it."""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "BudgetExceeded",
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
    """A hard budget refused a call: the one error tracking raises into user code by design."""


class StoreError(TokentrailError):
    """A usage store could not be opened, read or written."""


class AdapterError(TokentrailError):
    """A provider response could not be read in a strict API."""
