"""Planning: which budget instances (slots) a call counts against in the current windows, and what its
worst case charges each of them. Plans are cached per (model, provider, scope) while their windows stay
current, and forgotten when the limits in force change."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tokentrail.budgets._estimate import Estimator, checked_count
from tokentrail.budgets._in_force import BudgetsInForce
from tokentrail.budgets._notices import CACHE_LIMIT
from tokentrail.budgets.backend import Slot
from tokentrail.budgets.policy import ROLLING_BUCKETS, TOKEN_KINDS, Budget, RequestScope, escape

if TYPE_CHECKING:
    from tokentrail._record import Attribution

__all__ = ["EMPTY_PLAN", "SESSION_KINDS", "Call", "Plan", "Planner", "attribution_scope"]

SESSION_KINDS = ("session", "run")
_DIRECTIONS = {"input": 1, "output": 2, "both": 3}


class Plan:
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


class Call:
    """A call's plan with its worst case (USD units, output tokens) and what that charges each slot."""

    __slots__ = ("charges", "output", "plan", "units")

    def __init__(self, plan: Plan, units: int | None, input_tokens: int, output: int) -> None:
        self.plan = plan
        self.units = units
        self.output = output
        held = units or 0
        tokens_by_direction = (0, input_tokens, output, input_tokens + output)
        if plan.direction:  # every budget counts the same tokens (the usual case)
            self.charges = ((held, tokens_by_direction[plan.direction]),) * len(plan.slots)
        else:
            self.charges = tuple((held, tokens_by_direction[d]) for d in plan.directions)


EMPTY_PLAN = Plan(RequestScope({}, ()), [], [], [], [], -math.inf, math.inf)


class Planner:
    """Plans calls against the budgets in force; `grace` keeps a window's counters past its end, and
    `session_ttl` keeps a session's (or run's) counters after its last call."""

    __slots__ = ("_calls", "_estimator", "_grace", "_in_force", "_pairs", "_plans", "_session_ttl", "_slots")

    def __init__(
        self, in_force: BudgetsInForce, estimator: Estimator, grace: float, session_ttl: float
    ) -> None:
        self._in_force = in_force
        self._estimator = estimator
        self._grace = grace
        self._session_ttl = session_ttl
        self._pairs: dict[tuple[object, ...], tuple[tuple[int, str], ...]] = {}
        self._plans: dict[tuple[object, ...], Plan] = {}
        self._slots: dict[tuple[int, str, str], Slot] = {}
        self._calls: dict[tuple[object, ...], Call] = {}

    def forget(self) -> None:
        """Drop what was planned with limits no longer in force."""
        self._slots = {}
        self._plans = {}
        self._calls = {}

    # -- a call: its plan, worst case and charges -------------------------------------------------------------

    def call(
        self,
        scope: Mapping[str, Any] | None,
        model: str | None,
        provider: str | None,
        input_tokens: int,
        max_output_tokens: int | None,
        context: Mapping[str, str] | None,
        estimate_units: int | None,
        now: float,
    ) -> Call:
        """What a call reserves: cached per (model, provider, counts, scope) while its windows stay current."""
        call = None
        key: tuple[object, ...] | None = None
        if type(scope) is dict and context is None and estimate_units is None:
            key = (model, provider, input_tokens, max_output_tokens, *scope.items())
            try:
                call = self._calls.get(key)
            except TypeError:  # unhashable scope values (a list of tags): planned without the cache
                key = None
        if call is not None and call.plan.valid_from <= now < call.plan.valid_until:
            return call
        call = self._new_call(scope, model, provider, input_tokens, max_output_tokens, context, now)
        if estimate_units is not None:
            return Call(call.plan, checked_count(estimate_units, "estimate_units"), input_tokens, call.output)
        if key is not None:
            if len(self._calls) >= CACHE_LIMIT:
                self._calls.clear()
            self._calls[key] = call
        return call

    def _new_call(
        self,
        scope: Mapping[str, Any] | None,
        model: str | None,
        provider: str | None,
        input_tokens: int,
        max_output_tokens: int | None,
        context: Mapping[str, str] | None,
        now: float,
    ) -> Call:
        try:
            plan = self._plans.get((model, provider, *scope.items())) if type(scope) is dict else None
        except TypeError:  # unhashable scope values (a list of tags): planned without the cache
            plan = None
        if plan is None or not plan.valid_from <= now < plan.valid_until:
            plan = self.plan(scope, model, provider, now)
        if not plan.slots and not plan.per_call:
            return Call(plan, None, input_tokens, 0)
        units, output = self._estimator.estimate(model, provider, input_tokens, max_output_tokens, context)
        return Call(plan, units, input_tokens, output)

    # -- plans --------------------------------------------------------------------------------------------------

    def plan(
        self, scope: Mapping[str, Any] | None, model: str | None, provider: str | None, now: float
    ) -> Plan:
        """The plan for a call (`scope` None: the current `tokentrail.scope()`)."""
        if scope is None:
            from tokentrail.scope import current_scope

            attribution = current_scope()
            key: tuple[object, ...] = (model, provider, attribution)
            plan = self._plans.get(key)
            if plan is not None and plan.valid_from <= now < plan.valid_until:
                return plan
            request = RequestScope.of(attribution_scope(attribution), model, provider)
        else:
            try:
                key = (model, provider, *scope.items())
                plan = self._plans.get(key)
            except TypeError:  # unhashable values (a list of tags): plan without the cache
                return self._build(RequestScope.of(scope, model, provider), now)
            if plan is not None and plan.valid_from <= now < plan.valid_until:
                return plan
            request = RequestScope.of(scope, model, provider)
        plan = self._build(request, now)
        if len(self._plans) >= CACHE_LIMIT:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _pairs_of(self, request: RequestScope) -> tuple[tuple[int, str], ...]:
        """(budget index, instance key) of every budget `request` counts against, in any window."""
        pairs = self._pairs.get(request.key)
        if pairs is None:
            pairs = tuple(
                (index, scope_key)
                for index, budget in enumerate(self._in_force.configured)
                for scope_key in budget.scope_keys(request)
            )
            if len(self._pairs) >= CACHE_LIMIT:
                self._pairs.clear()
            self._pairs[request.key] = pairs
        return pairs

    def _build(self, request: RequestScope, now: float) -> Plan:
        active = self._in_force.active
        slots: list[Slot] = []
        owners: list[int] = []
        per_call: list[Budget] = []
        valid_from, valid_until = -math.inf, math.inf
        for index, scope_key in self._pairs_of(request):
            budget = active[index]
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
        return Plan(request, slots, owners, per_call, [active[i] for i in owners], valid_from, valid_until)

    def _slot(self, index: int, scope_key: str, request: RequestScope, now: float) -> Slot | None:
        """The counters one budget instance keeps in the window `now` falls in (None: no such instance)."""
        budget = self._in_force.active[index]
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
        if found is not None and (kind not in SESSION_KINDS or found.expires_at >= expires_at - 60):
            return found
        base = f"{escape(budget.name)}|{scope_key}|"
        if kind == "rolling":
            bucket = int(window_key[1:])
            heads = tuple(f"{base}r{bucket - back}" for back in range(ROLLING_BUCKETS + 1))
        else:
            heads = (base + window_key,)
        alert_units, alert_tokens = self._in_force.alert_amounts[index]
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
        if len(self._slots) >= CACHE_LIMIT:
            self._slots.clear()
        self._slots[cache_key] = slot
        return slot


def attribution_scope(attribution: Attribution) -> dict[str, Any]:
    """The scope a call's `Attribution` (agent, session, user, tool, tags) gives budgets to match."""
    return {
        "agent": attribution.agent,
        "session": attribution.session,
        "user": attribution.user,
        "tool": attribution.tool,
        "tags": attribution.tags,
    }
