"""The reservation path against the back-end: hold a planned call's worst case (or refuse it), settle
the actual spend, release what a failed call held, count spend that had no reservation. A call that
already happened is never failed by the back-end: its errors are counted and logged."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tokentrail._types import Cost, Usage
from tokentrail.budgets._alerts import Alerts
from tokentrail.budgets._enforce import Enforcer, exhausted
from tokentrail.budgets._notices import BackendFailures
from tokentrail.budgets._plans import EMPTY_PLAN, Call, Plan
from tokentrail.budgets.backend import BudgetBackend, ReserveOutcome, SettleOutcome, Slot
from tokentrail.budgets.events import BudgetBreach
from tokentrail.budgets.reservation import Reservation

__all__ = ["ReservationLedger"]

Price = Callable[[Usage, "str | None", "str | None", "Mapping[str, str] | None"], Cost]


class _Ids:
    """Reservation ids: a random per-process prefix and a counter (reseeded after a fork)."""

    __slots__ = ("counter", "prefix")

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex() + "-"
        self.counter = itertools.count(1)

    def next(self) -> str:
        return self.prefix + str(next(self.counter))


_ids = _Ids()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.reseed)


class ReservationLedger:
    """Reserves, settles and releases on `backend`; a reservation's room lasts `lease_seconds` at most."""

    __slots__ = (
        "_alerts",
        "_clock",
        "_enforcer",
        "_failures",
        "_settle_later",
        "backend",
        "lease_seconds",
        "price",
    )

    def __init__(
        self,
        backend: BudgetBackend,
        clock: Callable[[], float],
        lease_seconds: float,
        failures: BackendFailures,
        enforcer: Enforcer,
        alerts: Alerts,
        price: Price,
    ) -> None:
        self.backend = backend
        settle_later = getattr(backend, "settle_later", None)  # set by pipelining back-ends
        self._settle_later: Callable[..., None] | None = settle_later if callable(settle_later) else None
        self._clock = clock
        self.lease_seconds = lease_seconds
        self._failures = failures
        self._enforcer = enforcer
        self._alerts = alerts
        self.price = price  # settling usage prices it on the reserved model

    # -- reserve ---------------------------------------------------------------------------------------------

    def hold(
        self,
        call: Call,
        model: str | None,
        provider: str | None,
        context: Mapping[str, str] | None,
        input_tokens: int,
        now: float,
    ) -> Reservation:
        """Hold `call`'s worst case in every slot of its plan in one atomic step, or raise `BudgetExceeded`."""
        plan = call.plan
        if not plan.slots and not plan.per_call:
            return Reservation(
                self, _ids.next(), model, provider, context, EMPTY_PLAN, (), None, input_tokens, 0, now
            )
        units = call.units
        output = call.output
        charges = call.charges
        breaches: list[BudgetBreach] | None = None
        if plan.per_call or units is None:
            breaches = []
            self._enforcer.before_reserving(plan, units, input_tokens, output, model, provider, now, breaches)
        reservation_id = _ids.prefix + str(next(_ids.counter))
        lease_until = now + self.lease_seconds
        outcome: ReserveOutcome | None
        try:
            outcome = self.backend.reserve(reservation_id, plan.slots, charges, now, lease_until)
        except Exception as exc:
            self._unguarded(exc, plan)  # fail_closed raises; fail_open runs the call unguarded
            outcome = None
        else:
            if outcome[0] is not None:
                self._enforcer.refused(outcome, plan, charges, now)
        reservation = Reservation(
            self,
            reservation_id,
            model,
            provider,
            context,
            plan,
            charges,
            units,
            input_tokens,
            output,
            lease_until,
        )
        if outcome is not None and (plan.lenient or breaches):
            self._enforcer.after_reserving(reservation, outcome, breaches or [], model, provider, now)
        return reservation

    def _unguarded(self, exc: Exception, plan: Plan) -> None:
        """The back-end failed to reserve: refuse (fail_closed) or let the call run unguarded (fail_open).

        An unguarded call still settles its actual spend (or releases) under its reservation id: a
        reserve that failed only on the way back (a lost reply) is cleaned up, and a back-end that is
        reachable again by then counts the spend, so a passing failure loses no spend.
        """
        self._failures.failed("reserve", exc)
        if self._failures.fail_closed:
            raise self._failures.unavailable(plan.slots[0].budget, exc) from exc

    def check(self, plan: Plan, now: float) -> None:
        """Raise `BudgetExceeded` if a blocking slot of `plan` has no room left at all (nothing held)."""
        enforcing = [
            (slot, index) for slot, index in zip(plan.slots, plan.owners, strict=True) if slot.enforce
        ]
        if not enforcing:
            return
        try:
            tallies = self.backend.read([slot for slot, _ in enforcing], now)
        except Exception as exc:
            self._failures.failed("check", exc)
            if self._failures.fail_closed:
                raise self._failures.unavailable(enforcing[0][0].budget, exc) from exc
            return
        for (slot, index), tally in zip(enforcing, tallies, strict=True):
            if exhausted(slot, tally):
                raise self._enforcer.exceeded(index, slot, tally, 0, 0, now)

    # -- settle, release, spend without a reservation ------------------------------------------------------------

    def settle(self, reservation: Reservation, usage: Usage | None, units: int | None) -> None:
        """Count the actual spend (unknown: the held estimate) in place of what `reservation` held."""
        now = self._clock()
        plan = reservation.plan
        slots = plan.slots
        if slots:
            charges: Sequence[tuple[int, int]]
            if usage is None:
                if units is None:
                    charges = reservation.charges
                elif len(slots) == 1:
                    charges = ((units, reservation.charges[0][1]),)
                else:
                    charges = [(units, held_tokens) for _, held_tokens in reservation.charges]
            else:
                charges = [
                    (held_units if units is None else units, getattr(usage, attr))
                    for (held_units, _), attr in zip(reservation.charges, plan.token_attrs, strict=True)
                ]
            settle_later = self._settle_later
            if settle_later is not None:  # a pipelining back-end: the outcome arrives later
                settle_later(reservation.id, slots, charges, now, lambda out: self._settled(slots, now, out))
            else:
                try:
                    outcome = self.backend.settle(reservation.id, slots, charges, now)
                except Exception as exc:  # the call happened: never raise into it
                    self._failures.failed("settle", exc)
                else:
                    crossed = outcome[1]
                    if crossed[0] or (len(crossed) > 1 and any(crossed)):
                        self._settled(slots, now, outcome)
        if plan.per_call:
            self._alerts.call_spend(plan.per_call, units, usage, reservation.id, now)

    def _settled(self, slots: Sequence[Slot], now: float, outcome: SettleOutcome | Exception) -> None:
        """Alert on what a settlement crossed (or count its failure: the call happened, never raise)."""
        if isinstance(outcome, Exception):
            self._failures.failed("settle", outcome)
            return
        for slot, tally, crossed in zip(slots, outcome[0], outcome[1], strict=True):
            if crossed:
                self._alerts.crossed(slot, tally, crossed, now)

    def release(self, reservation: Reservation) -> None:
        """Give back what `reservation` held (a failure is left to the lease)."""
        if reservation.plan.slots:
            try:
                self.backend.release(reservation.id, reservation.plan.slots, self._clock())
            except Exception as exc:  # the lease gives the room back in the end
                self._failures.failed("release", exc)

    def spend(self, plan: Plan, units: int | None, usage: Usage, now: float) -> None:
        """Count spend that had no reservation (`units` None: unpriced, no USD)."""
        if plan.slots:
            charges = [(units or 0, getattr(usage, attr)) for attr in plan.token_attrs]
            try:
                outcome = self.backend.settle(None, plan.slots, charges, now)
            except Exception as exc:  # the call happened: never raise into it
                self._failures.failed("settle", exc)
            else:
                self._settled(plan.slots, now, outcome)
        if plan.per_call:
            self._alerts.call_spend(plan.per_call, units, usage, "", now)

    async def run_shielded(self, fn: Callable[..., object], *args: Any) -> None:
        """Run a settle/release to completion even if the awaiting task is cancelled meanwhile."""
        import asyncio

        if not self.backend.blocking:
            fn(*args)
            return
        task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        await asyncio.shield(task)
