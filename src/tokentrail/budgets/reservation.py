"""A `Reservation`: room held in every matching budget for one call until it is settled or released,
and `active_reservation()`, the one whose `with` block the current code runs in."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Mapping
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from tokentrail._money import units_to_decimal
from tokentrail._types import Cost, Usage, UsageStatus
from tokentrail.budgets._estimate import checked_count
from tokentrail.budgets._notices import logger

if TYPE_CHECKING:
    from tokentrail.budgets._ledger import ReservationLedger
    from tokentrail.budgets._plans import Plan

__all__ = ["Reservation", "active_reservation"]

_active: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar(
    "tokentrail_reservation", default=None
)
_STATE_LOCK = threading.Lock()


def active_reservation() -> Reservation | None:
    """The reservation whose `with` block the current code runs in (None outside any)."""
    return _active.get()


class Reservation:
    """Room held in every matching budget for one call, until it is settled or released.

    Use it as a context manager (sync or async): leaving the block without `settle()` — an exception,
    a timeout, a cancellation — releases it. Settling twice counts the first settlement only.
    """

    __slots__ = (
        "_ledger",
        "_token",
        "charges",
        "context",
        "estimate_input_tokens",
        "estimate_output_tokens",
        "estimate_units",
        "expires_at",
        "id",
        "model",
        "plan",
        "provider",
        "state",
    )

    def __init__(
        self,
        ledger: ReservationLedger,
        reservation_id: str,
        model: str | None,
        provider: str | None,
        context: Mapping[str, str] | None,
        plan: Plan,
        charges: tuple[tuple[int, int], ...],
        estimate_units: int | None,
        estimate_input_tokens: int,
        estimate_output_tokens: int,
        expires_at: float,
    ) -> None:
        self._ledger = ledger
        self.id = reservation_id
        self.model = model
        self.provider = provider
        self.context = context
        self.plan = plan
        self.charges = charges
        self.estimate_units = estimate_units
        self.estimate_input_tokens = estimate_input_tokens
        self.estimate_output_tokens = estimate_output_tokens
        self.expires_at = expires_at
        self.state: Literal["reserved", "settled", "released"] = "reserved"
        self._token: contextvars.Token[Reservation | None] | None = None

    @property
    def estimate(self) -> Decimal | None:
        """The worst-case USD cost held (None when the model could not be priced)."""
        return None if self.estimate_units is None else units_to_decimal(self.estimate_units)

    @property
    def budgets(self) -> list[str]:
        """Names of the budgets holding room for this call."""
        return [slot.budget for slot in self.plan.slots] + [b.name for b in self.plan.per_call]

    # -- settle / release ---------------------------------------------------------------------------------

    def settle(
        self,
        usage: Usage | Cost | None = None,
        *,
        cost: Cost | None = None,
        cost_units: int | None = None,
    ) -> None:
        """Count the call's actual spend and drop the reservation.

        Give the `usage` (priced here on the reserved model), or a `cost` / `cost_units` you already
        have, or both. Unknown usage, or nothing at all, charges the reserved estimate: never $0.
        """
        if usage is None and cost is None and type(cost_units) is int and cost_units >= 0:
            units: int | None = cost_units  # a cost already priced: the tracker's usual call
        else:
            usage, units = self._spend(usage, cost, cost_units)
        with _STATE_LOCK:
            first = self.state == "reserved"
            if first:
                self.state = "settled"
        if first or self._finish("settled"):
            self._ledger.settle(self, usage, units)

    async def asettle(
        self,
        usage: Usage | Cost | None = None,
        *,
        cost: Cost | None = None,
        cost_units: int | None = None,
    ) -> None:
        """`settle` for async code: waits on network back-ends in a worker thread, cancellation-safe."""
        spend = self._spend(usage, cost, cost_units)
        if not self._finish("settled"):
            return
        await self._ledger.run_shielded(self._ledger.settle, self, *spend)

    def release(self) -> None:
        """Give the held room back without spending anything (the call failed or never ran)."""
        if self._finish("released"):
            self._ledger.release(self)

    async def arelease(self) -> None:
        if self._finish("released"):
            await self._ledger.run_shielded(self._ledger.release, self)

    def _finish(self, state: Literal["settled", "released"]) -> bool:
        """Move to `state`; False when that is not allowed (settled already, or released twice)."""
        with _STATE_LOCK:
            if self.state == "reserved":
                self.state = state
                return True
            if state == "settled" and self.state == "released":
                return True  # spend after a release still counts (as spend without a reservation)
        logger.debug("tokentrail: reservation %s already %s; %s ignored", self.id, self.state, state)
        return False

    def _spend(
        self, usage: Usage | Cost | None, cost: Cost | None, cost_units: int | None
    ) -> tuple[Usage | None, int | None]:
        """(usage, actual units or None when unknown) from what the caller gave."""
        if isinstance(usage, Cost):
            usage, cost = None, usage
        if usage is not None and not isinstance(usage, Usage):
            raise TypeError(f"settle() takes a tokentrail.Usage or Cost, got {type(usage).__name__}")
        if usage is not None and usage.status is UsageStatus.UNKNOWN:
            return None, None
        if cost is not None:
            return usage, (cost.total_units if cost.priced else None)
        if cost_units is not None:
            return usage, checked_count(cost_units, "cost_units")
        if usage is None:
            return None, None
        priced = self._ledger.price(usage, self.model, self.provider, self.context)
        return usage, (priced.total_units if priced.priced else None)

    # -- context managers ------------------------------------------------------------------------------------

    def __enter__(self) -> Reservation:
        self._token = _active.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._reset_active()
        if self.state == "reserved":
            self.release()

    async def __aenter__(self) -> Reservation:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._reset_active()
        if self.state == "reserved":
            await self.arelease()

    def _reset_active(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _active.reset(token)
            except ValueError:  # left in another context than it was entered in
                _active.set(None)

    def __repr__(self) -> str:
        return (
            f"Reservation({self.id!r}, model={self.model!r}, estimate={self.estimate}, state={self.state!r})"
        )
