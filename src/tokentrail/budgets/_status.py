"""Status: where every budget instance stands in its current window, read from the back-end's counters
(spent, reserved, remaining, percent, reset time, alert levels fired) for reports, the CLI and the
dashboard."""

from __future__ import annotations

import math
from typing import Any

from tokentrail._money import units_to_decimal
from tokentrail.budgets._plans import SESSION_KINDS
from tokentrail.budgets.backend import BudgetBackend, Tally
from tokentrail.budgets.events import BudgetStatus, percent_of
from tokentrail.budgets.policy import ROLLING_BUCKETS, Budget, parse_scope_key

__all__ = ["status_rows"]


def status_rows(budgets: tuple[Budget, ...], backend: BudgetBackend, now: float) -> list[BudgetStatus]:
    """One row per instance of each of `budgets` (in force) in the window `now` falls in."""
    rows: list[BudgetStatus] = []
    for budget in budgets:
        rows.extend(_status_of(budget, backend, now))
    return rows


def _status_of(budget: Budget, backend: BudgetBackend, now: float) -> list[BudgetStatus]:
    kind = budget.window.kind
    if kind == "call":
        return [_status_row(budget, "", "call", Tally(), 0, now)]
    heads = backend.heads(budget.name, now)
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
    if not groups and kind not in SESSION_KINDS and all(v != "*" for _, v in budget.scope):
        return [_status_row(budget, "", window_key, Tally(), 0, now)]
    rows = []
    for (scope_key, key), members in sorted(groups.items()):
        tally = Tally(
            sum(h.spent_units for h in members),
            sum(h.spent_tokens for h in members),
            sum(h.reserved_units for h in members),
            sum(h.reserved_tokens for h in members),
        )
        fired = max(h.alert_level for h in members)
        rows.append(_status_row(budget, scope_key, key, tally, fired, now))
    return rows


def _status_row(
    budget: Budget, scope_key: str, window_key: str, tally: Tally, fired: int, now: float
) -> BudgetStatus:
    limit_units, limit_tokens = budget.limit_units, budget.limit_tokens
    remaining_usd = None
    if limit_units is not None:
        remaining_usd = units_to_decimal(max(limit_units - tally.spent_units - tally.reserved_units, 0))
    remaining_tokens = None
    if limit_tokens is not None:
        remaining_tokens = max(limit_tokens - tally.spent_tokens - tally.reserved_tokens, 0)
    scope = {**budget.scope_dict, **parse_scope_key(scope_key)}
    if budget.window.kind in SESSION_KINDS and window_key:
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
        percent=max(percent_of(tally.spent_units, limit_units), percent_of(tally.spent_tokens, limit_tokens)),
        resets_at=budget.resets_at(now),
        alerts_fired=fired,
    )
