"""What budgets report: `BudgetAlert` (a threshold reached), `BudgetBreach` (a call that would pass a
limit of a non-blocking budget) and `BudgetStatus` (where a budget stands now)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = ["BudgetAlert", "BudgetBreach", "BudgetStatus"]


def percent_of(spent: int, limit: int | None) -> float:
    """`spent` as a percentage of `limit` (0 without a limit; a zero limit is 100 % used by any spend)."""
    if limit is None:
        return 0.0
    if limit == 0:
        return 100.0 if spent else 0.0
    return spent * 100 / limit


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A budget's settled spend reached `threshold` (a fraction of its limit) in this window.

    Fired once per threshold per window per budget instance, however many processes share the counters.
    `kind` is "threshold" below the limit and "limit" at or above it.
    """

    budget: str
    kind: str
    threshold: Decimal
    window: str
    window_key: str
    scope: dict[str, str]
    spent_usd: Decimal
    limit_usd: Decimal | None
    spent_tokens: int
    limit_tokens: int | None
    percent: float
    resets_at: datetime | None
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "budget_alert",
            "budget": self.budget,
            "kind": self.kind,
            "threshold": str(self.threshold),
            "window": self.window,
            "window_key": self.window_key,
            "scope": self.scope,
            "spent_usd": str(self.spent_usd),
            "limit_usd": None if self.limit_usd is None else str(self.limit_usd),
            "spent_tokens": self.spent_tokens,
            "limit_tokens": self.limit_tokens,
            "percent": round(self.percent, 4),
            "resets_at": None if self.resets_at is None else self.resets_at.isoformat(),
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class BudgetBreach:
    """A call that would pass the limit of a budget whose action is "warn" or a callable.

    The callable action receives it: return to let the call go ahead, raise to stop it (the reservation
    is released and the exception reaches the caller).
    """

    budget: str
    window: str
    scope: dict[str, str]
    unit: str  # "usd" or "tokens"
    spent: Decimal | int
    reserved: Decimal | int
    limit: Decimal | int
    requested: Decimal | int
    resets_at: datetime | None
    model: str | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where one budget instance stands in its current window.

    `spent_*` is settled spend, `reserved_*` what calls in flight hold, `remaining_*` what is left for new
    calls (limit − spent − reserved, never below 0; None without that limit). `percent` is settled spend
    as a percentage of the limit (the larger of the USD and token percentages).
    """

    budget: str
    window: str
    window_key: str
    scope: dict[str, str]
    action: str
    limit_usd: Decimal | None
    spent_usd: Decimal
    reserved_usd: Decimal
    remaining_usd: Decimal | None
    limit_tokens: int | None
    spent_tokens: int
    reserved_tokens: int
    remaining_tokens: int | None
    token_kind: str
    percent: float
    resets_at: datetime | None
    alerts_fired: int = 0  # alert levels already fired in this window

    @property
    def exhausted(self) -> bool:
        """No room left for another call (a USD or token limit fully spent or reserved)."""
        return (self.remaining_usd is not None and self.remaining_usd <= 0) or (
            self.remaining_tokens is not None and self.remaining_tokens <= 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "window": self.window,
            "window_key": self.window_key,
            "scope": self.scope,
            "action": self.action,
            "limit_usd": None if self.limit_usd is None else str(self.limit_usd),
            "spent_usd": str(self.spent_usd),
            "reserved_usd": str(self.reserved_usd),
            "remaining_usd": None if self.remaining_usd is None else str(self.remaining_usd),
            "limit_tokens": self.limit_tokens,
            "spent_tokens": self.spent_tokens,
            "reserved_tokens": self.reserved_tokens,
            "remaining_tokens": self.remaining_tokens,
            "token_kind": self.token_kind,
            "percent": round(self.percent, 4),
            "resets_at": None if self.resets_at is None else self.resets_at.isoformat(),
        }
