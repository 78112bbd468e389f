"""The budgets in force: the configured budgets with the limits operators set on the back-end
(`budget set`, shared by every process), re-read every `refresh_seconds`, and their alert amounts."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal

from tokentrail.budgets._notices import BackendFailures
from tokentrail.budgets.backend import BudgetBackend
from tokentrail.budgets.policy import Budget, BudgetConfigError, RequestScope, threshold_amounts

__all__ = ["BudgetsInForce", "validated"]

_monotonic = time.monotonic

AlertAmounts = tuple[tuple[int, ...], tuple[int, ...]]  # (USD units, tokens) at each alert level


def validated(budgets: Iterable[Budget]) -> tuple[Budget, ...]:
    """`budgets` as a tuple, or a `BudgetConfigError` for a non-Budget or two budgets of the same name."""
    configured = tuple(budgets)
    for budget in configured:
        if not isinstance(budget, Budget):
            raise BudgetConfigError(f"budgets must be tokentrail.Budget objects, got {budget!r}")
    names = [b.name for b in configured]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BudgetConfigError(
            f"two budgets share the name {duplicates[0]!r}: give one of them name=… "
            "(budgets with the same scope and window need distinct names)"
        )
    return configured


class BudgetsInForce:
    """`configured` as given, `active` with overridden limits (same order); `index` finds one by name.

    `on_change` runs whenever the limits in force change (what was planned with the old ones is stale).
    """

    __slots__ = (
        "_backend",
        "_failures",
        "_overrides",
        "_refresh_seconds",
        "active",
        "alert_amounts",
        "alert_levels",
        "configured",
        "index",
        "next_refresh",
        "on_change",
    )

    def __init__(
        self,
        budgets: Iterable[Budget],
        backend: BudgetBackend,
        failures: BackendFailures,
        refresh_seconds: float,
    ) -> None:
        self.configured = tuple(budgets)
        self.index = {budget.name: index for index, budget in enumerate(self.configured)}
        self._backend = backend
        self._failures = failures
        self._refresh_seconds = refresh_seconds
        self.next_refresh = -math.inf
        self.on_change: Callable[[], None] = lambda: None
        self._overrides: dict[str, tuple[int | None, int | None]] = {}
        self.active: tuple[Budget, ...] = self.configured
        self.alert_levels = tuple(b.alert_levels() for b in self.configured)
        self.alert_amounts: tuple[AlertAmounts, ...] = ()
        self._apply({})

    # -- reading the limits set on the back-end ----------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the overrides when `refresh_seconds` passed since the last time (keep them on failure)."""
        if _monotonic() < self.next_refresh:
            return
        self.next_refresh = _monotonic() + self._refresh_seconds
        try:
            overrides = self._backend.limits()
        except Exception as exc:  # keep the last known limits
            self._failures.failed("reading limit overrides", exc)
            return
        if overrides != self._overrides:
            self._apply(overrides)

    def _apply(self, overrides: dict[str, tuple[int | None, int | None]]) -> None:
        active = tuple(
            b.with_limits(*overrides[b.name]) if b.name in overrides else b for b in self.configured
        )
        amounts = tuple(
            (threshold_amounts(b.limit_units, levels), threshold_amounts(b.limit_tokens, levels))
            for b, levels in zip(active, self.alert_levels, strict=True)
        )
        self._overrides = dict(overrides)
        self.active, self.alert_amounts = active, amounts
        self.on_change()

    # -- what operators change ---------------------------------------------------------------------------------

    def set_limit(self, name: str, limit_usd: Decimal | str | int | None, limit_tokens: int | None) -> None:
        budget = self.by_name(name)
        probe = Budget(limit_usd, limit_tokens, window=budget.window, name=name)
        self._backend.set_limits(name, (probe.limit_units, probe.limit_tokens))
        self.next_refresh = -math.inf

    def clear_limit(self, name: str) -> None:
        self.by_name(name)
        self._backend.set_limits(name, None)
        self.next_refresh = -math.inf

    def reset(self, name: str | None, scope: Mapping[str, str] | None) -> int:
        budgets = [self.by_name(name)] if name is not None else list(self.configured)
        removed = 0
        for budget in budgets:
            keys = budget.scope_keys(RequestScope.of(scope)) if scope is not None else [None]
            for key in keys:
                removed += self._backend.reset(budget.name, key)
        return removed

    # -- lookups -------------------------------------------------------------------------------------------------

    def by_name(self, name: str) -> Budget:
        """The configured budget `name`, or a `BudgetConfigError` listing the known names."""
        if name in self.index:
            return self.configured[self.index[name]]
        known = ", ".join(repr(b.name) for b in self.configured) or "none"
        raise BudgetConfigError(f"no budget named {name!r} (known: {known})")

    def active_by_name(self, name: str) -> Budget:
        return self.active[self.index[name]]
