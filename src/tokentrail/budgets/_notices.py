"""What the budgets log instead of raising: a warning once per cause, and back-end failures counted
and logged sparingly (the first, then every thousandth), with the fail-open / fail-closed policy."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from tokentrail.budgets.policy import BudgetConfigError
from tokentrail.errors import BudgetExceeded

if TYPE_CHECKING:
    from tokentrail.budgets.backend import BudgetBackend

__all__ = ["CACHE_LIMIT", "BackendFailures", "WarnOnce", "logger"]

logger = logging.getLogger("tokentrail.budgets")

CACHE_LIMIT = 8192  # entries in any of the budgets' caches before it is emptied


class WarnOnce:
    """Logs a warning the first time its key is seen (the keys kept are bounded)."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[tuple[object, ...]] = set()

    def __call__(self, key: tuple[object, ...], message: str, *args: object) -> None:
        if key in self._seen:
            return
        if len(self._seen) >= CACHE_LIMIT:
            self._seen.clear()
        self._seen.add(key)
        logger.warning(message, *args)


class BackendFailures:
    """Counts and logs the back-end's failures; `policy` says whether a call runs unguarded or is refused."""

    __slots__ = ("backend", "count", "policy")

    def __init__(self, backend: BudgetBackend, policy: Literal["fail_open", "fail_closed"]) -> None:
        if policy not in ("fail_open", "fail_closed"):
            raise BudgetConfigError(f"on_backend_error must be 'fail_open' or 'fail_closed', got {policy!r}")
        self.backend = backend
        self.policy: Literal["fail_open", "fail_closed"] = policy
        self.count = 0

    def failed(self, what: str, exc: Exception) -> None:
        self.count += 1
        count = self.count
        if count == 1 or count % 1000 == 0:
            logger.error(
                "tokentrail: budget back-end %s failed on %s (%d failures so far): %s",
                self.backend.url,
                what,
                count,
                exc,
                exc_info=count == 1,
            )

    @property
    def fail_closed(self) -> bool:
        return self.policy == "fail_closed"

    def unavailable(self, budget: str, exc: Exception) -> BudgetExceeded:
        """The refusal of a call that cannot be guarded (fail_closed)."""
        return BudgetExceeded(
            budget=budget,
            reason=f"the budget back-end is unavailable ({exc}) and on_backend_error='fail_closed'",
        )
