"""Budgets: soft alerts and hard limits on spend that hold under concurrency, across processes and machines.

    from tokentrail.budgets import Budget, BudgetManager

    manager = BudgetManager([Budget(limit_usd="5", window="daily", scope={"agent": "researcher"})],
                            backend="sqlite:///budgets.db")
    with manager.reserve("gpt-4o", "openai", input_tokens=1200, max_output_tokens=500) as reservation:
        ...                                   # the call
        reservation.settle(usage)             # leaving without settle releases

Back-ends: `MemoryBackend` (default), `sqlite:///…`, `redis://…` (`tokentrail[redis]`),
`postgresql://…?schema=…` (`tokentrail[postgres]`). Redis, psycopg and FastAPI load only when used.
"""

from tokentrail.budgets.backend import BudgetBackend
from tokentrail.budgets.config import BudgetConfig, config_from_env, load_budgets, load_config, preset
from tokentrail.budgets.connect import open_backend
from tokentrail.budgets.events import BudgetAlert, BudgetBreach, BudgetStatus
from tokentrail.budgets.limits import RunLimits, RunUsage
from tokentrail.budgets.manager import BudgetManager, Reservation, active_reservation
from tokentrail.budgets.memory import MemoryBackend
from tokentrail.budgets.policy import Budget, BudgetConfigError, Window

__all__ = [
    "Budget",
    "BudgetAlert",
    "BudgetBackend",
    "BudgetBreach",
    "BudgetConfig",
    "BudgetConfigError",
    "BudgetManager",
    "BudgetStatus",
    "MemoryBackend",
    "Reservation",
    "RunLimits",
    "RunUsage",
    "Window",
    "active_reservation",
    "config_from_env",
    "load_budgets",
    "load_config",
    "open_backend",
    "preset",
]
