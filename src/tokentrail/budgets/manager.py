"""Enforcement: reserve a call's worst case before it runs, settle to the actual cost after.

    manager = BudgetManager([Budget(limit_usd="5", scope={"agent": "researcher"})])
    with manager.reserve("gpt-4o", "openai", input_tokens=1200, max_output_tokens=500,
                         scope={"agent": "researcher"}) as reservation:
        response = client.chat.completions.create(...)
        reservation.settle(usage)      # leaving without settle (error, cancellation) releases

A reservation is counted against every budget whose scope matches, in one atomic step of the back-end,
so calls racing for the last dollar cannot pass a hard limit: spend stays ≤ limit whenever outputs are
capped by `max_output_tokens`, and overshoot is at most (actual − estimate) of the calls in flight
otherwise. A process that dies holding a reservation loses it when its lease (`lease_seconds`) passes.
A call is counted in the window it was reserved in.

`BudgetManager` wires the steps, each in its own module: the budgets in force (`_in_force`), planning
and the worst case (`_plans`, `_estimate`), the reservation path against the back-end (`_ledger`, with
refusals from `_enforce`), alerts (`_alerts`) and status (`_status`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from tokentrail._types import Usage, UsageStatus
from tokentrail.budgets._alerts import AlertCallback, Alerts
from tokentrail.budgets._enforce import Enforcer
from tokentrail.budgets._estimate import Estimator, checked_count
from tokentrail.budgets._in_force import BudgetsInForce, validated
from tokentrail.budgets._ledger import ReservationLedger
from tokentrail.budgets._notices import BackendFailures, WarnOnce, logger
from tokentrail.budgets._plans import Plan, Planner, attribution_scope
from tokentrail.budgets._status import status_rows
from tokentrail.budgets.backend import BudgetBackend
from tokentrail.budgets.connect import open_backend
from tokentrail.budgets.events import BudgetStatus
from tokentrail.budgets.policy import Budget, BudgetConfigError
from tokentrail.budgets.reservation import Reservation, active_reservation

if TYPE_CHECKING:
    import asyncio

    from tokentrail._record import Record
    from tokentrail.pricing.catalog import Catalog

__all__ = ["BudgetManager", "Reservation", "active_reservation", "attribution_scope"]

_monotonic = time.monotonic


class BudgetManager:
    """Applies a set of budgets to calls, over one counter back-end shared by every process using it.

    `backend` is a `BudgetBackend` or a URL ("memory://", "sqlite:///budgets.db", "redis://…",
    "postgresql://…?schema=…"). `clock` returns epoch seconds (inject one in tests). `catalog` prices the
    estimates (default: the process catalog). `lease_seconds` bounds how long a reservation of a process
    that died keeps its room. Limits set from the command line (`budget set`) are picked up within
    `refresh_seconds`. When the back-end cannot be reached, `on_backend_error` decides: "fail_open"
    (default) lets calls run unguarded, "fail_closed" refuses them; either way the failure is logged and
    counted in `backend_errors`, and settling never raises into a call that already happened.
    """

    def __init__(
        self,
        budgets: Iterable[Budget] = (),
        backend: BudgetBackend | str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        catalog: Catalog | None = None,
        lease_seconds: float = 900.0,
        session_ttl: float = 7 * 86400.0,
        refresh_seconds: float = 5.0,
        register: bool = True,
        on_backend_error: Literal["fail_open", "fail_closed"] = "fail_open",
    ) -> None:
        configured = validated(budgets)
        if lease_seconds <= 0 or session_ttl <= 0:
            raise BudgetConfigError("lease_seconds and session_ttl must be positive")
        self._owns_backend = backend is None or isinstance(backend, str)  # opened here: closed here
        self.backend: BudgetBackend = open_backend(backend)
        self._failures = BackendFailures(self.backend, on_backend_error)
        self._clock = clock
        warn_once = WarnOnce()
        self._warn_once = warn_once
        self._in_force = BudgetsInForce(configured, self.backend, self._failures, refresh_seconds)
        self._estimator = Estimator(catalog, warn_once)
        grace = max(float(lease_seconds), 3600.0)  # a window's counters outlive it by a lease at least
        self._planner = Planner(self._in_force, self._estimator, grace, float(session_ttl))
        self._in_force.on_change = self._planner.forget
        self._alerts = Alerts(self._in_force)
        self._ledger = ReservationLedger(
            self.backend,
            clock,
            float(lease_seconds),
            self._failures,
            Enforcer(self._in_force, warn_once, clock),
            self._alerts,
            self._estimator.price,
        )
        if register and configured:
            try:
                self.backend.register({b.name: b.definition() for b in configured})
            except Exception as exc:  # descriptions for tools only: the budgets work without them
                self._failures.failed("register", exc)

    @property
    def budgets(self) -> tuple[Budget, ...]:
        """The budgets in force (with limits overridden from the back-end, if any)."""
        self._in_force.refresh()
        return self._in_force.active

    @property
    def lease_seconds(self) -> float:
        """How long a reservation keeps its room when its process dies without settling or releasing."""
        return self._ledger.lease_seconds

    @property
    def on_backend_error(self) -> Literal["fail_open", "fail_closed"]:
        return self._failures.policy

    @property
    def backend_errors(self) -> int:
        """Back-end failures so far (each logged; the first with its traceback)."""
        return self._failures.count

    # -- limits set by operators -----------------------------------------------------------------------------

    def set_limit(
        self,
        name: str,
        *,
        limit_usd: Decimal | str | int | None = None,
        limit_tokens: int | None = None,
    ) -> None:
        """Override budget `name`'s limits for every process sharing the back-end (None: no such limit)."""
        self._in_force.set_limit(name, limit_usd, limit_tokens)

    def clear_limit(self, name: str) -> None:
        """Drop an override: the budget's own limits apply again."""
        self._in_force.clear_limit(name)

    def reset(self, name: str | None = None, scope: Mapping[str, str] | None = None) -> int:
        """Forget spend, reservations and fired alerts of budget `name` (all budgets when None)."""
        return self._in_force.reset(name, scope)

    # -- reserve → (the call) → settle ------------------------------------------------------------------------

    def estimate(
        self,
        model: str | None,
        provider: str | None = None,
        input_tokens: int = 0,
        max_output_tokens: int | None = None,
        context: Mapping[str, str] | None = None,
    ) -> tuple[int | None, int]:
        """Worst-case (USD units or None when unpriced, output tokens) of a call before it runs."""
        return self._estimator.estimate(model, provider, input_tokens, max_output_tokens, context)

    def reserve(
        self,
        model: str | None,
        provider: str | None = None,
        input_tokens: int = 0,
        max_output_tokens: int | None = None,
        scope: Mapping[str, Any] | None = None,
        context: Mapping[str, str] | None = None,
        *,
        estimate_units: int | None = None,
    ) -> Reservation:
        """Hold a call's worst-case cost in every budget its scope matches, or raise `BudgetExceeded`.

        The worst case is `input_tokens` in and `max_output_tokens` out (or the model's output limit),
        priced with the catalog; pass `estimate_units` to supply your own USD estimate (10**-24 USD).
        `scope` defaults to the current `tokentrail.scope()`; the model and provider join it.
        """
        if type(input_tokens) is not int or input_tokens < 0:
            input_tokens = checked_count(input_tokens, "input_tokens")
        if max_output_tokens is not None and (type(max_output_tokens) is not int or max_output_tokens < 0):
            max_output_tokens = checked_count(max_output_tokens, "max_output_tokens")
        if _monotonic() >= self._in_force.next_refresh:
            self._in_force.refresh()
        now = self._clock()
        call = self._planner.call(
            scope, model, provider, input_tokens, max_output_tokens, context, estimate_units, now
        )
        return self._ledger.hold(call, model, provider, context, input_tokens, now)

    async def areserve(
        self,
        model: str | None,
        provider: str | None = None,
        input_tokens: int = 0,
        max_output_tokens: int | None = None,
        scope: Mapping[str, Any] | None = None,
        context: Mapping[str, str] | None = None,
        *,
        estimate_units: int | None = None,
    ) -> Reservation:
        """`reserve` for async code. A cancellation while a network back-end answers releases what it held."""
        import asyncio

        if scope is None:
            scope = _scope_or_current(None)
        if not self.backend.blocking:
            return self.reserve(
                model,
                provider,
                input_tokens,
                max_output_tokens,
                scope,
                context,
                estimate_units=estimate_units,
            )
        task = asyncio.ensure_future(
            asyncio.to_thread(
                self.reserve,
                model,
                provider,
                input_tokens,
                max_output_tokens,
                scope,
                context,
                estimate_units=estimate_units,
            )
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_release_orphan)
            raise

    def check(self, scope: Mapping[str, Any] | None = None) -> None:
        """Raise `BudgetExceeded` if a blocking budget matching `scope` has no room left at all.

        A cheap pre-flight test (no reservation) for request handlers: see `tokentrail.budgets.fastapi`.
        """
        self._in_force.refresh()
        now = self._clock()
        self._ledger.check(self._planner.plan(scope, None, None, now), now)

    def record(
        self,
        scope: Mapping[str, Any] | None,
        usage: Usage,
        cost_units: int | None,
        timestamp: float | None = None,
        *,
        model: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Count spend that had no reservation (a sink for the tracker's records).

        `cost_units` is the exact cost in 10**-24 USD, None when unpriced; `timestamp` (epoch seconds,
        default now) picks the window. Never raises for budget reasons: the call already happened.
        """
        if usage.status is UsageStatus.UNKNOWN:
            self._warn_once(
                ("unknown-usage", model),
                "tokentrail: a call of %r with unknown usage was not counted in budgets",
                model,
            )
            return
        self._in_force.refresh()
        now = self._clock() if timestamp is None else timestamp
        plan = self._planner.plan(scope if scope is not None else {}, model, provider, now)
        self._ledger.spend(plan, cost_units, usage, now)

    def observe(self, record: Record) -> None:
        """A tracker sink: settles the reservation this call runs inside, or records the spend."""
        reservation = active_reservation()
        if (
            reservation is not None
            and reservation._ledger is self._ledger
            and reservation.state == "reserved"
        ):
            usage = record.usage
            if usage.status is UsageStatus.UNKNOWN:
                usage_or_none: Usage | None = None
                units = None
            else:
                usage_or_none, units = usage, record.cost_units
            if reservation._finish("settled"):
                self._ledger.settle(reservation, usage_or_none, units)
            return
        self.record(
            attribution_scope(record.attribution),
            record.usage,
            record.cost_units,
            record.timestamp_us / 1_000_000,
            model=record.model,
            provider=record.provider,
        )

    def _planned(
        self, scope: Mapping[str, Any] | None, model: str | None, provider: str | None, now: float
    ) -> Plan:
        """The plan a call of (model, provider, scope) counts against at `now` (for tests and tools)."""
        return self._planner.plan(scope, model, provider, now)

    # -- alerts and status -------------------------------------------------------------------------------------

    def subscribe(self, callback: AlertCallback) -> Callable[[], None]:
        """Call `callback(alert)` for every `BudgetAlert` (sync or async); returns an unsubscribe function.

        A failing callback is logged, never raised into the call that crossed the threshold.
        """
        return self._alerts.subscribe(callback)

    def status(self) -> list[BudgetStatus]:
        """Every budget instance in its current window: spent, reserved, remaining, percent, resets at,
        and how many alert levels fired (`Budget.alert_levels()[:alerts_fired]` are the thresholds)."""
        self._in_force.refresh()
        return status_rows(self._in_force.active, self.backend, self._clock())

    # -- plumbing ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the alert loop thread (if one was started) and close the back-end if this manager opened
        it from a URL; a back-end object passed in belongs to the caller, and is only flushed (pipelined
        settlements delivered, quota grants settled)."""
        self._alerts.close()
        if self._owns_backend:
            self.backend.close()
            return
        flush = getattr(self.backend, "flush", None)
        if callable(flush):
            try:
                flush()
            except Exception as exc:  # closing never raises for the back-end's sake
                self._failures.failed("flush", exc)

    def __enter__(self) -> BudgetManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BudgetManager({len(self._in_force.configured)} budgets, backend={self.backend.url!r})"


def _scope_or_current(scope: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if scope is not None:
        return scope
    from tokentrail.scope import current_scope

    return attribution_scope(current_scope())


def _release_orphan(task: asyncio.Future[Reservation]) -> None:
    """A reservation whose requester was cancelled while the back-end answered: give it back."""
    if task.cancelled() or task.exception() is not None:
        return
    try:
        task.result().release()
    except Exception:
        logger.exception("tokentrail: could not release an orphaned reservation")
