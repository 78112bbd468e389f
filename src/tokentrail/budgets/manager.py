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
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timezone
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from tokentrail._money import units_to_decimal
from tokentrail._types import Cost, Usage, UsageStatus
from tokentrail.budgets.backend import BudgetBackend, ReserveOutcome, SettleOutcome, Slot, Tally, TallyRow
from tokentrail.budgets.connect import open_backend
from tokentrail.budgets.events import BudgetAlert, BudgetBreach, BudgetStatus, percent_of
from tokentrail.budgets.policy import (
    ROLLING_BUCKETS,
    TOKEN_KINDS,
    Budget,
    BudgetConfigError,
    RequestScope,
    escape,
    parse_scope_key,
    threshold_amounts,
)
from tokentrail.errors import BudgetExceeded

if TYPE_CHECKING:
    import asyncio

    from tokentrail._record import Attribution, Record
    from tokentrail.pricing.catalog import Catalog

__all__ = ["BudgetManager", "Reservation", "active_reservation"]

logger = logging.getLogger("tokentrail.budgets")

AlertCallback = Callable[[BudgetAlert], "object | Awaitable[object]"]

_CACHE_LIMIT = 8192
_monotonic = time.monotonic
_SESSION_KINDS = ("session", "run")
_active: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar(
    "tokentrail_reservation", default=None
)


def active_reservation() -> Reservation | None:
    """The reservation whose `with` block the current code runs in (None outside any)."""
    return _active.get()


# -- reservation ids: a random per-process prefix and a counter (reseeded after fork) -------------------------


class _Ids:
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


# -- worst-case usage without re-validating counts we checked ourselves -----------------------------------------

_USAGE_DEFAULTS = tuple((f.name, f.default) for f in fields(Usage))
_set_attribute = object.__setattr__


def _estimate_usage(input_tokens: int, output_tokens: int) -> Usage:
    usage = Usage.__new__(Usage)
    for name, default in _USAGE_DEFAULTS:
        _set_attribute(usage, name, default)
    _set_attribute(usage, "input_tokens", input_tokens)
    _set_attribute(usage, "output_tokens", output_tokens)
    return usage


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative int, got {value!r}")
    return int(value)


# -- plans: which budget instances a call counts against --------------------------------------------------------

_DIRECTIONS = {"input": 1, "output": 2, "both": 3}


class _Plan:
    """The slots and per-call budgets one (model, provider, scope) counts against, with what a settlement
    reads from the usage for each; valid while `valid_from <= now < valid_until` (its windows are current).
    """

    __slots__ = (
        "budgets",
        "direction",
        "directions",
        "lenient",
        "owners",
        "per_call",
        "request",
        "slots",
        "token_attrs",
        "valid_from",
        "valid_until",
    )

    def __init__(
        self,
        request: RequestScope,
        slots: list[Slot],
        owners: list[int],
        per_call: list[Budget],
        budgets: list[Budget],
        valid_from: float,
        valid_until: float,
    ) -> None:
        self.request = request
        self.slots = tuple(slots)
        self.owners = tuple(owners)
        self.per_call = tuple(per_call)
        self.budgets = tuple(budgets)
        self.token_attrs = tuple(TOKEN_KINDS[b.token_kind][0] for b in budgets)
        self.directions = tuple(_DIRECTIONS[TOKEN_KINDS[b.token_kind][1]] for b in budgets)
        self.direction = self.directions[0] if len(set(self.directions)) == 1 else 0  # 0: they differ
        self.lenient = any(not slot.enforce for slot in slots)  # some budget warns or calls back instead
        self.valid_from = valid_from
        self.valid_until = valid_until


class _Call:
    """A call's plan with its worst case (USD units, output tokens) and what that charges each slot."""

    __slots__ = ("charges", "output", "plan", "units")

    def __init__(self, plan: _Plan, units: int | None, input_tokens: int, output: int) -> None:
        self.plan = plan
        self.units = units
        self.output = output
        held = units or 0
        tokens_by_direction = (0, input_tokens, output, input_tokens + output)
        if plan.direction:  # every budget counts the same tokens (the usual case)
            self.charges = ((held, tokens_by_direction[plan.direction]),) * len(plan.slots)
        else:
            self.charges = tuple((held, tokens_by_direction[d]) for d in plan.directions)


_EMPTY_PLAN = _Plan(RequestScope({}, ()), [], [], [], [], -math.inf, math.inf)
_STATE_LOCK = threading.Lock()


# -- the reservation ----------------------------------------------------------------------------------------


class Reservation:
    """Room held in every matching budget for one call, until it is settled or released.

    Use it as a context manager (sync or async): leaving the block without `settle()` — an exception,
    a timeout, a cancellation — releases it. Settling twice counts the first settlement only.
    """

    __slots__ = (
        "_manager",
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
        manager: BudgetManager,
        reservation_id: str,
        model: str | None,
        provider: str | None,
        context: Mapping[str, str] | None,
        plan: _Plan,
        charges: tuple[tuple[int, int], ...],
        estimate_units: int | None,
        estimate_input_tokens: int,
        estimate_output_tokens: int,
        expires_at: float,
    ) -> None:
        self._manager = manager
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
            self._manager._settle(self, usage, units)

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
        await self._manager._run_shielded(self._manager._settle, self, *spend)

    def release(self) -> None:
        """Give the held room back without spending anything (the call failed or never ran)."""
        if self._finish("released"):
            self._manager._release(self)

    async def arelease(self) -> None:
        if self._finish("released"):
            await self._manager._run_shielded(self._manager._release, self)

    def _finish(self, state: Literal["settled", "released"]) -> bool:
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
            return usage, _count(cost_units, "cost_units")
        if usage is None:
            return None, None
        priced = self._manager._price(usage, self.model, self.provider, self.context)
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


# -- the manager ----------------------------------------------------------------------------------------------


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
        self._budgets = tuple(budgets)
        for budget in self._budgets:
            if not isinstance(budget, Budget):
                raise BudgetConfigError(f"budgets must be tokentrail.Budget objects, got {budget!r}")
        self._index = {budget.name: index for index, budget in enumerate(self._budgets)}
        names = [b.name for b in self._budgets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise BudgetConfigError(
                f"two budgets share the name {duplicates[0]!r}: give one of them name=… "
                "(budgets with the same scope and window need distinct names)"
            )
        if lease_seconds <= 0 or session_ttl <= 0:
            raise BudgetConfigError("lease_seconds and session_ttl must be positive")
        self._owns_backend = backend is None or isinstance(backend, str)  # opened here: closed here
        self.backend: BudgetBackend = open_backend(backend)
        settle_later = getattr(self.backend, "settle_later", None)  # set by pipelining back-ends
        self._settle_later: Callable[..., None] | None = settle_later if callable(settle_later) else None
        self._clock = clock
        self._catalog = catalog
        self.lease_seconds = float(lease_seconds)
        self._session_ttl = float(session_ttl)
        self._grace = max(self.lease_seconds, 3600.0)
        self._refresh_seconds = refresh_seconds
        if on_backend_error not in ("fail_open", "fail_closed"):
            raise BudgetConfigError(
                f"on_backend_error must be 'fail_open' or 'fail_closed', got {on_backend_error!r}"
            )
        self.on_backend_error = on_backend_error
        self.backend_errors = 0
        self._next_refresh = -math.inf
        self._overrides: dict[str, tuple[int | None, int | None]] = {}
        self._active: tuple[Budget, ...] = self._budgets
        self._alert_levels = tuple(b.alert_levels() for b in self._budgets)
        self._alert_amounts: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()
        self._plans: dict[tuple[object, ...], tuple[tuple[int, str], ...]] = {}
        self._plan_cache: dict[tuple[object, ...], _Plan] = {}
        self._slots: dict[tuple[int, str, str], Slot] = {}
        self._estimates: dict[tuple[object, ...], tuple[int | None, int]] = {}
        self._calls: dict[tuple[object, ...], _Call] = {}
        self._warned: set[tuple[object, ...]] = set()
        self._subscribers: list[AlertCallback] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._apply_limits({})
        if register and self._budgets:
            try:
                self.backend.register({b.name: b.definition() for b in self._budgets})
            except Exception as exc:  # descriptions for tools only: the budgets work without them
                self._backend_failed("register", exc)

    @property
    def budgets(self) -> tuple[Budget, ...]:
        """The budgets in force (with limits overridden from the back-end, if any)."""
        self._refresh()
        return self._active

    # -- limits set by operators -----------------------------------------------------------------------------

    def set_limit(
        self,
        name: str,
        *,
        limit_usd: Decimal | str | int | None = None,
        limit_tokens: int | None = None,
    ) -> None:
        """Override budget `name`'s limits for every process sharing the back-end (None: no such limit)."""
        budget = self._by_name(name)
        probe = Budget(limit_usd, limit_tokens, window=budget.window, name=name)
        self.backend.set_limits(name, (probe.limit_units, probe.limit_tokens))
        self._next_refresh = -math.inf

    def clear_limit(self, name: str) -> None:
        """Drop an override: the budget's own limits apply again."""
        self._by_name(name)
        self.backend.set_limits(name, None)
        self._next_refresh = -math.inf

    def reset(self, name: str | None = None, scope: Mapping[str, str] | None = None) -> int:
        """Forget spend, reservations and fired alerts of budget `name` (all budgets when None)."""
        budgets = [self._by_name(name)] if name is not None else list(self._budgets)
        removed = 0
        for budget in budgets:
            keys = budget.scope_keys(RequestScope.of(scope)) if scope is not None else [None]
            for key in keys:
                removed += self.backend.reset(budget.name, key)
        return removed

    def _by_name(self, name: str) -> Budget:
        if name in self._index:
            return self._budgets[self._index[name]]
        known = ", ".join(repr(b.name) for b in self._budgets) or "none"
        raise BudgetConfigError(f"no budget named {name!r} (known: {known})")

    def _refresh(self) -> None:
        if _monotonic() < self._next_refresh:
            return
        self._next_refresh = _monotonic() + self._refresh_seconds
        try:
            overrides = self.backend.limits()
        except Exception as exc:  # keep the last known limits
            self._backend_failed("reading limit overrides", exc)
            return
        if overrides != self._overrides:
            self._apply_limits(overrides)

    def _apply_limits(self, overrides: dict[str, tuple[int | None, int | None]]) -> None:
        active = tuple(b.with_limits(*overrides[b.name]) if b.name in overrides else b for b in self._budgets)
        amounts = tuple(
            (threshold_amounts(b.limit_units, levels), threshold_amounts(b.limit_tokens, levels))
            for b, levels in zip(active, self._alert_levels, strict=True)
        )
        self._slots = {}
        self._plan_cache = {}
        self._calls = {}
        self._overrides = dict(overrides)
        self._active, self._alert_amounts = active, amounts

    # -- estimates -----------------------------------------------------------------------------------------------

    def _price(
        self, usage: Usage, model: str | None, provider: str | None, context: Mapping[str, str] | None
    ) -> Cost:
        try:
            if self._catalog is not None:
                return self._catalog.price(usage, model, provider, None, context)
            from tokentrail.pricing.catalog import price

            return price(usage, model, provider, None, context)
        except Exception as exc:  # pricing must never break the call it guards
            logger.warning("tokentrail: could not price %r: %s", model, exc)
            return Cost.unpriced(f"pricing failed: {exc}")

    def estimate(
        self,
        model: str | None,
        provider: str | None = None,
        input_tokens: int = 0,
        max_output_tokens: int | None = None,
        context: Mapping[str, str] | None = None,
    ) -> tuple[int | None, int]:
        """Worst-case (USD units or None when unpriced, output tokens) of a call before it runs."""
        key = (model, provider, input_tokens, max_output_tokens)
        if context is None:
            found = self._estimates.get(key)
            if found is not None:
                return found
        output = (
            max_output_tokens
            if max_output_tokens is not None
            else self._output_bound(model, provider, input_tokens)
        )
        cost = self._price(_estimate_usage(input_tokens, output), model, provider, context)
        result = (cost.total_units if cost.priced else None, output)
        if context is None:
            if len(self._estimates) >= _CACHE_LIMIT:
                self._estimates.clear()
            self._estimates[key] = result
        return result

    def _output_bound(self, model: str | None, provider: str | None, input_tokens: int) -> int:
        """The most a call may generate when the request does not say: the model's limits, if known."""
        if model:
            try:
                from tokentrail.tokens.limits import model_limits

                limits = model_limits(model, provider, self._catalog)
                if limits.max_output_tokens is not None:
                    return limits.max_output_tokens
                if limits.context_window is not None:
                    return max(limits.context_window - input_tokens, 0)
            except Exception:
                logger.debug("tokentrail: model limits unavailable for %r", model, exc_info=True)
        self._warn_once(
            ("no-output-limit", model, provider),
            "tokentrail: no output limit known for model %r: its reservations hold the input only; "
            "pass max_output_tokens (or set_model_limits) to bound spend",
            model,
        )
        return 0

    def _warn_once(self, key: tuple[object, ...], message: str, *args: object) -> None:
        if key in self._warned:
            return
        if len(self._warned) >= _CACHE_LIMIT:
            self._warned.clear()
        self._warned.add(key)
        logger.warning(message, *args)

    # -- planning: which budget instances a call counts against ------------------------------------------------

    def _pairs(self, request: RequestScope) -> tuple[tuple[int, str], ...]:
        """(budget index, instance key) of every budget `request` counts against, in any window."""
        pairs = self._plans.get(request.key)
        if pairs is None:
            pairs = tuple(
                (index, scope_key)
                for index, budget in enumerate(self._budgets)
                for scope_key in budget.scope_keys(request)
            )
            if len(self._plans) >= _CACHE_LIMIT:
                self._plans.clear()
            self._plans[request.key] = pairs
        return pairs

    def _planned(
        self, scope: Mapping[str, Any] | None, model: str | None, provider: str | None, now: float
    ) -> _Plan:
        """The plan for a call: cached per (model, provider, scope) while its windows stay current."""
        if scope is None:
            from tokentrail.scope import current_scope

            attribution = current_scope()
            key: tuple[object, ...] = (model, provider, attribution)
            plan = self._plan_cache.get(key)
            if plan is not None and plan.valid_from <= now < plan.valid_until:
                return plan
            request = RequestScope.of(attribution_scope(attribution), model, provider)
        else:
            try:
                key = (model, provider, *scope.items())
                plan = self._plan_cache.get(key)
            except TypeError:  # unhashable values (a list of tags): plan without the cache
                return self._build_plan(RequestScope.of(scope, model, provider), now)
            if plan is not None and plan.valid_from <= now < plan.valid_until:
                return plan
            request = RequestScope.of(scope, model, provider)
        plan = self._build_plan(request, now)
        if len(self._plan_cache) >= _CACHE_LIMIT:
            self._plan_cache.clear()
        self._plan_cache[key] = plan
        return plan

    def _build_plan(self, request: RequestScope, now: float) -> _Plan:
        slots: list[Slot] = []
        owners: list[int] = []
        per_call: list[Budget] = []
        valid_from, valid_until = -math.inf, math.inf
        for index, scope_key in self._pairs(request):
            budget = self._active[index]
            window = budget.window
            if window.kind == "call":
                per_call.append(budget)
                continue
            slot = self._slot(index, scope_key, request, now)
            if slot is None:
                continue
            slots.append(slot)
            owners.append(index)
            if window.calendar:
                start, end, _key = budget.current_span(now)
            elif window.kind == "rolling":
                start = math.floor(now / window.bucket_seconds) * window.bucket_seconds
                end = start + window.bucket_seconds
            else:  # session / run: refresh the heads' expiry now and then
                start, end = now, now + 60.0
            valid_from, valid_until = max(valid_from, start), min(valid_until, end)
        return _Plan(
            request, slots, owners, per_call, [self._active[i] for i in owners], valid_from, valid_until
        )

    def _slot(self, index: int, scope_key: str, request: RequestScope, now: float) -> Slot | None:
        budget = self._active[index]
        window = budget.window
        kind = window.kind
        if kind == "call":
            return None
        heads: tuple[str, ...]
        if window.calendar:
            _start, end, window_key = budget.current_span(now)
            expires_at = end + self._grace
        elif kind == "rolling":
            bucket = math.floor(now / window.bucket_seconds)
            window_key = f"r{bucket}"
            expires_at = (bucket + ROLLING_BUCKETS + 1) * window.bucket_seconds + self._grace
        else:
            value = request.values.get(kind)
            if value is None:
                return None
            window_key = f"{kind}={escape(value)}"
            expires_at = now + self._session_ttl
        cache_key = (index, scope_key, window_key)
        found = self._slots.get(cache_key)
        if found is not None and (kind not in _SESSION_KINDS or found.expires_at >= expires_at - 60):
            return found
        base = f"{escape(budget.name)}|{scope_key}|"
        if kind == "rolling":
            bucket = int(window_key[1:])
            heads = tuple(f"{base}r{bucket - back}" for back in range(ROLLING_BUCKETS + 1))
        else:
            heads = (base + window_key,)
        alert_units, alert_tokens = self._alert_amounts[index]
        slot = Slot(
            budget.name,
            scope_key,
            window_key,
            heads,
            expires_at,
            budget.limit_units,
            budget.limit_tokens,
            alert_units,
            alert_tokens,
            budget.action == "block",
        )
        if len(self._slots) >= _CACHE_LIMIT:
            self._slots.clear()
        self._slots[cache_key] = slot
        return slot

    # -- reserve ---------------------------------------------------------------------------------------------------

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
            input_tokens = _count(input_tokens, "input_tokens")
        if max_output_tokens is not None and (type(max_output_tokens) is not int or max_output_tokens < 0):
            max_output_tokens = _count(max_output_tokens, "max_output_tokens")
        if _monotonic() >= self._next_refresh:
            self._refresh()
        now = self._clock()
        call = None
        key: tuple[object, ...] | None = None
        if type(scope) is dict and context is None and estimate_units is None:
            key = (model, provider, input_tokens, max_output_tokens, *scope.items())
            try:
                call = self._calls.get(key)
            except TypeError:  # unhashable scope values (a list of tags): planned without the cache
                key = None
        if call is None or not call.plan.valid_from <= now < call.plan.valid_until:
            call = self._call(scope, model, provider, input_tokens, max_output_tokens, context, now)
            if estimate_units is not None:
                call = _Call(call.plan, _count(estimate_units, "estimate_units"), input_tokens, call.output)
            elif key is not None:
                if len(self._calls) >= _CACHE_LIMIT:
                    self._calls.clear()
                self._calls[key] = call
        plan = call.plan
        if not plan.slots and not plan.per_call:
            return Reservation(
                self, _ids.next(), model, provider, context, _EMPTY_PLAN, (), None, input_tokens, 0, now
            )
        units = call.units
        output = call.output
        charges = call.charges
        breaches: list[BudgetBreach] | None = None
        if plan.per_call or units is None:
            breaches = []
            self._before_reserving(plan, units, input_tokens, output, model, provider, now, breaches)
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
                self._refused(outcome, plan, charges, now)
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
            self._after_reserving(reservation, outcome, breaches or [], model, provider, now)
        return reservation

    def _call(
        self,
        scope: Mapping[str, Any] | None,
        model: str | None,
        provider: str | None,
        input_tokens: int,
        max_output_tokens: int | None,
        context: Mapping[str, str] | None,
        now: float,
    ) -> _Call:
        """What a call reserves against: its plan, worst-case units and output tokens, and the charges."""
        try:
            plan = self._plan_cache.get((model, provider, *scope.items())) if type(scope) is dict else None
        except TypeError:  # unhashable scope values (a list of tags): planned without the cache
            plan = None
        if plan is None or not plan.valid_from <= now < plan.valid_until:
            plan = self._planned(scope, model, provider, now)
        if not plan.slots and not plan.per_call:
            return _Call(plan, None, input_tokens, 0)
        units, output = self.estimate(model, provider, input_tokens, max_output_tokens, context)
        return _Call(plan, units, input_tokens, output)

    def _after_reserving(
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

    def _before_reserving(
        self,
        plan: _Plan,
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
        self._refresh()
        now = self._clock()
        plan = self._planned(scope, None, None, now)
        enforcing = [
            (slot, index) for slot, index in zip(plan.slots, plan.owners, strict=True) if slot.enforce
        ]
        if not enforcing:
            return
        try:
            tallies = self.backend.read([slot for slot, _ in enforcing], now)
        except Exception as exc:
            self._backend_failed("check", exc)
            if self.on_backend_error == "fail_closed":
                raise self._unavailable(enforcing[0][0].budget, exc) from exc
            return
        for (slot, index), tally in zip(enforcing, tallies, strict=True):
            if _exhausted(slot, tally):
                raise self._exceeded(index, slot, tally, 0, 0, now)

    # -- settle, release, record --------------------------------------------------------------------------------

    def _settle(self, reservation: Reservation, usage: Usage | None, units: int | None) -> None:
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
                    self._backend_failed("settle", exc)
                else:
                    crossed = outcome[1]
                    if crossed[0] or (len(crossed) > 1 and any(crossed)):
                        self._settled(slots, now, outcome)
        if plan.per_call:
            self._check_call_spend(plan.per_call, units, usage, reservation, now)

    def _settled(self, slots: Sequence[Slot], now: float, outcome: SettleOutcome | Exception) -> None:
        """Alert on what a settlement crossed (or count its failure: the call happened, never raise)."""
        if isinstance(outcome, Exception):
            self._backend_failed("settle", outcome)
            return
        for slot, tally, crossed in zip(slots, outcome[0], outcome[1], strict=True):
            if crossed:
                self._alert(slot, tally, crossed, now)

    def _release(self, reservation: Reservation) -> None:
        if reservation.plan.slots:
            try:
                self.backend.release(reservation.id, reservation.plan.slots, self._clock())
            except Exception as exc:  # the lease gives the room back in the end
                self._backend_failed("release", exc)

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
        self._refresh()
        now = self._clock() if timestamp is None else timestamp
        plan = self._planned(scope if scope is not None else {}, model, provider, now)
        if plan.slots:
            charges = [(cost_units or 0, getattr(usage, attr)) for attr in plan.token_attrs]
            self._spent(None, plan.slots, charges, now)
        if plan.per_call:
            self._check_call_spend(plan.per_call, cost_units, usage, None, now)

    def observe(self, record: Record) -> None:
        """A tracker sink: settles the reservation this call runs inside, or records the spend."""
        reservation = _active.get()
        if reservation is not None and reservation._manager is self and reservation.state == "reserved":
            usage = record.usage
            if usage.status is UsageStatus.UNKNOWN:
                usage_or_none: Usage | None = None
                units = None
            else:
                usage_or_none, units = usage, record.cost_units
            if reservation._finish("settled"):
                self._settle(reservation, usage_or_none, units)
            return
        self.record(
            attribution_scope(record.attribution),
            record.usage,
            record.cost_units,
            record.timestamp_us / 1_000_000,
            model=record.model,
            provider=record.provider,
        )

    def _spent(
        self, reservation: str | None, slots: Sequence[Slot], charges: Sequence[tuple[int, int]], now: float
    ) -> None:
        try:
            outcome = self.backend.settle(reservation, slots, charges, now)
        except Exception as exc:  # the call happened: never raise into it
            self._backend_failed("settle", exc)
            return
        for slot, tally, crossed in zip(slots, outcome[0], outcome[1], strict=True):
            if crossed:
                self._alert(slot, tally, crossed, now)

    # -- back-end failures ------------------------------------------------------------------------------------------

    def _backend_failed(self, what: str, exc: Exception) -> None:
        self.backend_errors += 1
        count = self.backend_errors
        if count == 1 or count % 1000 == 0:
            logger.error(
                "tokentrail: budget back-end %s failed on %s (%d failures so far): %s",
                self.backend.url,
                what,
                count,
                exc,
                exc_info=count == 1,
            )

    def _unavailable(self, budget: str, exc: Exception) -> BudgetExceeded:
        return BudgetExceeded(
            budget=budget,
            reason=f"the budget back-end is unavailable ({exc}) and on_backend_error='fail_closed'",
        )

    def _unguarded(self, exc: Exception, plan: _Plan) -> None:
        """The back-end failed to reserve: refuse (fail_closed) or let the call run unguarded (fail_open).

        An unguarded call still settles its actual spend (or releases) under its reservation id: a
        reserve that failed only on the way back (a lost reply) is cleaned up, and a back-end that is
        reachable again by then counts the spend, so a passing failure loses no spend.
        """
        self._backend_failed("reserve", exc)
        if self.on_backend_error == "fail_closed":
            raise self._unavailable(plan.slots[0].budget, exc) from exc

    # -- refusals, breaches and actions ---------------------------------------------------------------------------

    def _refused(
        self, outcome: ReserveOutcome, plan: _Plan, charges: tuple[tuple[int, int], ...], now: float
    ) -> None:
        index = outcome[0]
        assert index is not None
        slot, tally = plan.slots[index], Tally._make(outcome[1][index])
        units, tokens = charges[index]
        error = self._exceeded(plan.owners[index], slot, tally, units, tokens, now)
        logger.debug("tokentrail: %s", error)
        raise error

    def _exceeded(
        self, index: int, slot: Slot, tally: Tally, units: int, tokens: int, now: float
    ) -> BudgetExceeded:
        budget = self._active[index]
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
        error = self._exceeded(index, slot, tally, units, tokens, now)
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

    def _act(self, breaches: list[BudgetBreach]) -> None:
        """Run each breached budget's action: "warn" logs, a callable decides (raising stops the call)."""
        for breach in breaches:
            budget = self._active_by_name(breach.budget)
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

    def _check_call_spend(
        self,
        budgets: Sequence[Budget],
        units: int | None,
        usage: Usage | None,
        reservation: Reservation | None,
        now: float,
    ) -> None:
        """Per-call budgets alert when a call's actual spend passed the limit (uncapped output)."""
        for budget in budgets:
            tokens = _tokens_of(budget.token_kind, usage) if usage is not None else 0
            over_usd = budget.limit_units is not None and units is not None and units > budget.limit_units
            over_tokens = budget.limit_tokens is not None and tokens > budget.limit_tokens
            if not (over_usd or over_tokens):
                continue
            self._emit(
                BudgetAlert(
                    budget=budget.name,
                    kind="limit",
                    threshold=Decimal(1),
                    window="call",
                    window_key=reservation.id if reservation is not None else "",
                    scope=budget.scope_dict,
                    spent_usd=units_to_decimal(units or 0),
                    limit_usd=budget.limit_usd,
                    spent_tokens=tokens,
                    limit_tokens=budget.limit_tokens,
                    percent=max(
                        percent_of(units or 0, budget.limit_units), percent_of(tokens, budget.limit_tokens)
                    ),
                    resets_at=None,
                    at=datetime.fromtimestamp(now, timezone.utc),
                )
            )

    def _active_by_name(self, name: str) -> Budget:
        return self._active[self._index[name]]

    # -- alerts ---------------------------------------------------------------------------------------------------------

    def subscribe(self, callback: AlertCallback) -> Callable[[], None]:
        """Call `callback(alert)` for every `BudgetAlert` (sync or async); returns an unsubscribe function.

        A failing callback is logged, never raised into the call that crossed the threshold.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _alert(self, slot: Slot, row: TallyRow, crossed: Sequence[int], now: float) -> None:
        tally = Tally._make(row)
        index = self._index[slot.budget]
        budget = self._active[index]
        levels = self._alert_levels[index]
        scope = {**budget.scope_dict, **parse_scope_key(slot.scope_key)}
        percent = max(
            percent_of(tally.spent_units, slot.limit_units), percent_of(tally.spent_tokens, slot.limit_tokens)
        )
        for level in crossed:
            threshold = levels[level]
            self._emit(
                BudgetAlert(
                    budget=budget.name,
                    kind="limit" if threshold >= 1 else "threshold",
                    threshold=threshold,
                    window=budget.window.spec,
                    window_key=slot.window_key,
                    scope=scope,
                    spent_usd=units_to_decimal(tally.spent_units),
                    limit_usd=None if slot.limit_units is None else units_to_decimal(slot.limit_units),
                    spent_tokens=tally.spent_tokens,
                    limit_tokens=slot.limit_tokens,
                    percent=percent,
                    resets_at=budget.resets_at(now),
                    at=datetime.fromtimestamp(now, timezone.utc),
                )
            )

    def _emit(self, alert: BudgetAlert) -> None:
        level = logging.WARNING if alert.threshold >= 1 else logging.INFO
        where = ", ".join(f"{k}={v}" for k, v in alert.scope.items())
        logger.log(
            level,
            "tokentrail: budget %r%s reached %s%% of its limit (%.1f%% used, window %s)",
            alert.budget,
            f" [{where}]" if where else "",
            _format_fraction(alert.threshold),
            alert.percent,
            alert.window_key or alert.window,
        )
        for callback in list(self._subscribers):
            try:
                result = callback(alert)
                if hasattr(result, "__await__"):
                    self._schedule(result)
            except Exception:
                logger.exception("tokentrail: budget alert subscriber %r failed", callback)

    def _schedule(self, awaitable: Awaitable[object]) -> None:
        """Run an async subscriber's coroutine on the running loop, or on a private loop thread."""
        import asyncio

        async def run() -> None:
            try:
                await awaitable
            except Exception:
                logger.exception("tokentrail: async budget alert subscriber failed")

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run_coroutine_threadsafe(run(), self._background_loop())
            return
        task = loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _background_loop(self) -> asyncio.AbstractEventLoop:
        import asyncio

        with self._loop_lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="tokentrail-budget-alerts", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop

    # -- status -------------------------------------------------------------------------------------------------------

    def status(self) -> list[BudgetStatus]:
        """Every budget instance in its current window: spent, reserved, remaining, percent, resets at."""
        self._refresh()
        now = self._clock()
        rows: list[BudgetStatus] = []
        for index, budget in enumerate(self._active):
            rows.extend(self._status_of(index, budget, now))
        return rows

    def _status_of(self, index: int, budget: Budget, now: float) -> list[BudgetStatus]:
        kind = budget.window.kind
        if kind == "call":
            return [self._status_row(index, budget, "", "call", Tally(), 0, now)]
        heads = self.backend.heads(budget.name, now)
        groups: dict[tuple[str, str], list[Any]] = {}
        if budget.window.calendar:
            current = budget.current_span(now)[2]
            for head in heads:
                if head.window_key == current:
                    groups.setdefault((head.scope_key, current), []).append(head)
            window_key = current
        elif kind == "rolling":
            bucket = math.floor(now / budget.window.bucket_seconds)
            live = {f"r{bucket - back}" for back in range(ROLLING_BUCKETS + 1)}
            window_key = f"r{bucket}"
            for head in heads:
                if head.window_key in live:
                    groups.setdefault((head.scope_key, window_key), []).append(head)
        else:
            window_key = ""
            for head in heads:
                groups.setdefault((head.scope_key, head.window_key), []).append(head)
        if not groups and kind not in _SESSION_KINDS and all(v != "*" for _, v in budget.scope):
            return [self._status_row(index, budget, "", window_key, Tally(), 0, now)]
        rows = []
        for (scope_key, key), members in sorted(groups.items()):
            tally = Tally(
                sum(h.spent_units for h in members),
                sum(h.spent_tokens for h in members),
                sum(h.reserved_units for h in members),
                sum(h.reserved_tokens for h in members),
            )
            fired = max(h.alert_level for h in members)
            rows.append(self._status_row(index, budget, scope_key, key, tally, fired, now))
        return rows

    def _status_row(
        self,
        index: int,
        budget: Budget,
        scope_key: str,
        window_key: str,
        tally: Tally,
        fired: int,
        now: float,
    ) -> BudgetStatus:
        limit_units, limit_tokens = budget.limit_units, budget.limit_tokens
        remaining_usd = None
        if limit_units is not None:
            remaining_usd = units_to_decimal(max(limit_units - tally.spent_units - tally.reserved_units, 0))
        remaining_tokens = None
        if limit_tokens is not None:
            remaining_tokens = max(limit_tokens - tally.spent_tokens - tally.reserved_tokens, 0)
        scope = {**budget.scope_dict, **parse_scope_key(scope_key)}
        if budget.window.kind in _SESSION_KINDS and window_key:
            scope[budget.window.kind] = parse_scope_key(window_key).get(budget.window.kind, window_key)
        return BudgetStatus(
            budget=budget.name,
            window=budget.window.spec,
            window_key=window_key,
            scope=scope,
            action=budget.action_name,
            limit_usd=budget.limit_usd,
            spent_usd=units_to_decimal(tally.spent_units),
            reserved_usd=units_to_decimal(tally.reserved_units),
            remaining_usd=remaining_usd,
            limit_tokens=limit_tokens,
            spent_tokens=tally.spent_tokens,
            reserved_tokens=tally.reserved_tokens,
            remaining_tokens=remaining_tokens,
            token_kind=budget.token_kind,
            percent=max(
                percent_of(tally.spent_units, limit_units), percent_of(tally.spent_tokens, limit_tokens)
            ),
            resets_at=budget.resets_at(now),
            alerts_fired=fired,
        )

    # -- plumbing ------------------------------------------------------------------------------------------------------

    async def _run_shielded(self, fn: Callable[..., object], *args: Any) -> None:
        """Run a settle/release to completion even if the awaiting task is cancelled meanwhile."""
        import asyncio

        if not self.backend.blocking:
            fn(*args)
            return
        task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        await asyncio.shield(task)

    def close(self) -> None:
        """Stop the alert loop thread (if one was started) and close the back-end if this manager opened
        it from a URL; a back-end object passed in belongs to the caller, and is only flushed (pipelined
        settlements delivered, quota grants settled)."""
        with self._loop_lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._owns_backend:
            self.backend.close()
            return
        flush = getattr(self.backend, "flush", None)
        if callable(flush):
            try:
                flush()
            except Exception as exc:  # closing never raises for the back-end's sake
                self._backend_failed("flush", exc)

    def __enter__(self) -> BudgetManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BudgetManager({len(self._budgets)} budgets, backend={self.backend.url!r})"


# -- helpers --------------------------------------------------------------------------------------------------------


def _scope_or_current(scope: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if scope is not None:
        return scope
    from tokentrail.scope import current_scope

    return attribution_scope(current_scope())


def attribution_scope(attribution: Attribution) -> dict[str, Any]:
    return {
        "agent": attribution.agent,
        "session": attribution.session,
        "user": attribution.user,
        "tool": attribution.tool,
        "tags": attribution.tags,
    }


def _tokens_bound(kind: str, input_tokens: int, output_tokens: int) -> int:
    direction = TOKEN_KINDS[kind][1]
    if direction == "input":
        return input_tokens
    if direction == "output":
        return output_tokens
    return input_tokens + output_tokens


def _tokens_of(kind: str, usage: Usage) -> int:
    value: int = getattr(usage, TOKEN_KINDS[kind][0])
    return value


def _exhausted(slot: Slot, tally: Tally) -> bool:
    if slot.limit_units is not None and tally.spent_units + tally.reserved_units >= slot.limit_units:
        return True
    return slot.limit_tokens is not None and tally.spent_tokens + tally.reserved_tokens >= slot.limit_tokens


def _release_orphan(task: asyncio.Future[Reservation]) -> None:
    """A reservation whose requester was cancelled while the back-end answered: give it back."""
    if task.cancelled() or task.exception() is not None:
        return
    try:
        task.result().release()
    except Exception:
        logger.exception("tokentrail: could not release an orphaned reservation")


def _format_fraction(fraction: Decimal) -> str:
    return f"{(fraction * 100).normalize():f}"
