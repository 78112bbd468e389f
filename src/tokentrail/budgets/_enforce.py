"""Enforcement: what a call may not pass. Refusals (`BudgetExceeded` with the numbers), per-call limits
checked on the call's own worst case, unpriced calls under USD budgets, and the breaches of budgets that
warn or call back instead of blocking (their action runs; raising from it stops the call)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from tokentrail._money import units_to_decimal
from tokentrail.budgets._in_force import BudgetsInForce
from tokentrail.budgets._notices import WarnOnce, logger
from tokentrail.budgets.backend import ReserveOutcome, Slot, Tally
from tokentrail.budgets.events import BudgetBreach
from tokentrail.budgets.policy import TOKEN_KINDS, Budget, RequestScope, parse_scope_key
from tokentrail.errors import BudgetExceeded

if TYPE_CHECKING:
    from tokentrail.budgets._plans import Plan
    from tokentrail.budgets.reservation import Reservation

__all__ = ["Enforcer", "exhausted"]


class Enforcer:
    """Decides refusals and breaches against the budgets in force; `clock` dates the warnings."""

    __slots__ = ("_clock", "_in_force", "_warn_once")

    def __init__(self, in_force: BudgetsInForce, warn_once: WarnOnce, clock: Callable[[], float]) -> None:
        self._in_force = in_force
        self._warn_once = warn_once
        self._clock = clock

    # -- around the back-end's reserve ----------------------------------------------------------------------

    def before_reserving(
        self,
        plan: Plan,
        units: int | None,
        input_tokens: int,
        output: int,
        model: str | None,
        provider: str | None,
        now: float,
        breaches: list[BudgetBreach],
    ) -> None:
        """Per-call budgets check the call's own worst case; unpriced calls meet their USD budgets' policy."""
        for budget in plan.per_call:
            self._check_call(
                budget, plan.request, units, input_tokens, output, model, provider, now, breaches
            )
        if units is None:
            for slot, budget in zip(plan.slots, plan.budgets, strict=True):
                if budget.limit_units is not None:
                    self._unpriced(budget, slot, plan.request, model, provider, now, breaches)

    def refused(
        self, outcome: ReserveOutcome, plan: Plan, charges: tuple[tuple[int, int], ...], now: float
    ) -> None:
        """Raise the refusal of the slot the back-end named in `outcome`."""
        index = outcome[0]
        assert index is not None
        slot, tally = plan.slots[index], Tally._make(outcome[1][index])
        units, tokens = charges[index]
        error = self.exceeded(plan.owners[index], slot, tally, units, tokens, now)
        logger.debug("tokentrail: %s", error)
        raise error

    def after_reserving(
        self,
        reservation: Reservation,
        outcome: ReserveOutcome,
        breaches: list[BudgetBreach],
        model: str | None,
        provider: str | None,
        now: float,
    ) -> None:
        """Budgets that warn or call back act on what this reservation passed (raising releases it)."""
        plan = reservation.plan
        if plan.lenient:
            for slot, index, row, (charge_units, charge_tokens) in zip(
                plan.slots, plan.owners, outcome[1], reservation.charges, strict=True
            ):
                tally = Tally._make(row)
                if not slot.enforce and tally.exceeds(slot, charge_units, charge_tokens):
                    breaches.append(
                        self._breach(index, slot, tally, charge_units, charge_tokens, model, provider, now)
                    )
        if breaches:
            try:
                self._act(breaches)
            except BaseException:
                reservation.release()
                raise

    # -- refusals ---------------------------------------------------------------------------------------------

    def exceeded(
        self, index: int, slot: Slot, tally: Tally, units: int, tokens: int, now: float
    ) -> BudgetExceeded:
        """The refusal of a call charging (`units`, `tokens`) to `slot` of budget `index`, with the numbers."""
        budget = self._in_force.active[index]
        scope = {**budget.scope_dict, **parse_scope_key(slot.scope_key)}
        usd_over = slot.limit_units is not None and (
            tally.spent_units + tally.reserved_units + units > slot.limit_units
            or (units == 0 and tally.spent_units + tally.reserved_units >= slot.limit_units)
        )
        if usd_over and slot.limit_units is not None:
            return BudgetExceeded(
                budget=budget.name,
                window=budget.window.spec,
                spent=units_to_decimal(tally.spent_units),
                reserved=units_to_decimal(tally.reserved_units),
                limit=units_to_decimal(slot.limit_units),
                requested=units_to_decimal(units),
                resets_at=budget.resets_at(now),
                scope=scope,
                unit="usd",
            )
        return BudgetExceeded(
            budget=budget.name,
            window=budget.window.spec,
            spent=tally.spent_tokens,
            reserved=tally.reserved_tokens,
            limit=slot.limit_tokens,
            requested=tokens,
            resets_at=budget.resets_at(now),
            scope=scope,
            unit="tokens",
        )

    def _breach(
        self,
        index: int,
        slot: Slot,
        tally: Tally,
        units: int,
        tokens: int,
        model: str | None,
        provider: str | None,
        now: float,
    ) -> BudgetBreach:
        error = self.exceeded(index, slot, tally, units, tokens, now)
        return BudgetBreach(
            budget=error.budget or slot.budget,
            window=error.window or "",
            scope=error.scope,
            unit=error.unit,
            spent=error.spent or 0,
            reserved=error.reserved or 0,
            limit=error.limit or 0,
            requested=error.requested or 0,
            resets_at=error.resets_at,
            model=model,
            provider=provider,
        )

    def _check_call(
        self,
        budget: Budget,
        request: RequestScope,
        units: int | None,
        input_tokens: int,
        output: int,
        model: str | None,
        provider: str | None,
        now: float,
        breaches: list[BudgetBreach],
    ) -> None:
        """A per-call budget: the call's own worst case against the limit; no counters."""
        tokens = _tokens_bound(budget.token_kind, input_tokens, output)
        unit, requested, limit = None, 0, 0
        if budget.limit_units is not None:
            if units is None:
                if budget.on_unpriced == "fail_closed":
                    self._unpriced_refusal(budget, request, model, now, breaches)
                    return
            elif units > budget.limit_units:
                unit, requested, limit = "usd", units, budget.limit_units
        if unit is None and budget.limit_tokens is not None and tokens > budget.limit_tokens:
            unit, requested, limit = "tokens", tokens, budget.limit_tokens
        if unit is None:
            return
        show: Callable[[int], Decimal | int] = units_to_decimal if unit == "usd" else int
        zero: Decimal | int = show(0)
        breach = BudgetBreach(
            budget.name,
            "call",
            budget.scope_dict,
            unit,
            zero,
            zero,
            show(limit),
            show(requested),
            None,
            model,
            provider,
        )
        if budget.blocks:
            raise BudgetExceeded(
                budget=budget.name,
                window="call",
                spent=zero,
                reserved=zero,
                limit=show(limit),
                requested=show(requested),
                scope=breach.scope,
                unit=unit,
            )
        breaches.append(breach)

    def _unpriced(
        self,
        budget: Budget,
        slot: Slot,
        request: RequestScope,
        model: str | None,
        provider: str | None,
        now: float,
        breaches: list[BudgetBreach],
    ) -> None:
        if budget.on_unpriced == "fail_closed":
            self._unpriced_refusal(budget, request, model, now, breaches)
            return
        self._warn_once(
            ("unpriced", model, provider),
            "tokentrail: cannot price model %r (provider %r); USD budgets count it as $0 (on_unpriced='fail_open')",
            model,
            provider,
        )

    def _unpriced_refusal(
        self,
        budget: Budget,
        request: RequestScope,
        model: str | None,
        now: float,
        breaches: list[BudgetBreach],
    ) -> None:
        reason = f"model {model!r} cannot be priced and the budget is on_unpriced='fail_closed'"
        if budget.blocks:
            raise BudgetExceeded(
                budget=budget.name,
                window=budget.window.spec,
                limit=budget.limit_usd,
                resets_at=budget.resets_at(now),
                scope=budget.scope_dict,
                reason=reason,
            )
        zero = Decimal(0)
        limit = budget.limit_usd if budget.limit_usd is not None else zero
        breaches.append(
            BudgetBreach(
                budget.name,
                budget.window.spec,
                budget.scope_dict,
                "usd",
                zero,
                zero,
                limit,
                zero,
                None,
                model,
            )
        )

    # -- actions of budgets that do not block ------------------------------------------------------------------

    def _act(self, breaches: list[BudgetBreach]) -> None:
        """Run each breached budget's action: "warn" logs, a callable decides (raising stops the call)."""
        for breach in breaches:
            budget = self._in_force.active_by_name(breach.budget)
            if callable(budget.action):
                budget.action(breach)
                continue
            self._warn_once(
                (
                    "breach",
                    breach.budget,
                    tuple(sorted(breach.scope.items())),
                    budget.resets_at(self._clock()),
                ),
                "tokentrail: budget %r (%s) is over its limit (%s %s of %s); the call goes ahead (action='warn')",
                breach.budget,
                breach.window,
                breach.spent,
                breach.unit,
                breach.limit,
            )


def exhausted(slot: Slot, tally: Tally) -> bool:
    """No room left in `slot` for another call (its USD or token limit fully spent or reserved)."""
    if slot.limit_units is not None and tally.spent_units + tally.reserved_units >= slot.limit_units:
        return True
    return slot.limit_tokens is not None and tally.spent_tokens + tally.reserved_tokens >= slot.limit_tokens


def _tokens_bound(kind: str, input_tokens: int, output_tokens: int) -> int:
    direction = TOKEN_KINDS[kind][1]
    if direction == "input":
        return input_tokens
    if direction == "output":
        return output_tokens
    return input_tokens + output_tokens
