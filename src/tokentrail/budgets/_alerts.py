"""Alerts: a `BudgetAlert` for each threshold a settlement crossed (the back-end says which, once per
window however many processes share it) and for per-call budgets a call's actual spend passed; logged,
then handed to every subscriber (sync, or async on the running loop or a private loop thread)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tokentrail._money import units_to_decimal
from tokentrail._types import Usage
from tokentrail.budgets._in_force import BudgetsInForce
from tokentrail.budgets._notices import logger
from tokentrail.budgets.backend import Slot, Tally, TallyRow
from tokentrail.budgets.events import BudgetAlert, percent_of
from tokentrail.budgets.policy import TOKEN_KINDS, Budget, parse_scope_key

if TYPE_CHECKING:
    import asyncio

__all__ = ["AlertCallback", "Alerts"]

AlertCallback = Callable[[BudgetAlert], "object | Awaitable[object]"]


class Alerts:
    """Turns crossed thresholds into `BudgetAlert`s and delivers them to the subscribers."""

    __slots__ = ("_in_force", "_loop", "_loop_lock", "_subscribers", "_tasks")

    def __init__(self, in_force: BudgetsInForce) -> None:
        self._in_force = in_force
        self._subscribers: list[AlertCallback] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()

    def subscribe(self, callback: AlertCallback) -> Callable[[], None]:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    # -- what fires them ------------------------------------------------------------------------------------

    def crossed(self, slot: Slot, row: TallyRow, levels_crossed: Sequence[int], now: float) -> None:
        """Alert on each alert level of `slot` its settled spend (`row`) just reached."""
        tally = Tally._make(row)
        index = self._in_force.index[slot.budget]
        budget = self._in_force.active[index]
        levels = self._in_force.alert_levels[index]
        scope = {**budget.scope_dict, **parse_scope_key(slot.scope_key)}
        percent = max(
            percent_of(tally.spent_units, slot.limit_units), percent_of(tally.spent_tokens, slot.limit_tokens)
        )
        for level in levels_crossed:
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

    def call_spend(
        self,
        budgets: Sequence[Budget],
        units: int | None,
        usage: Usage | None,
        call_id: str,
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
                    window_key=call_id,
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

    # -- delivery --------------------------------------------------------------------------------------------

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

    def close(self) -> None:
        """Stop the private loop thread, if one was started."""
        with self._loop_lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)


def _tokens_of(kind: str, usage: Usage) -> int:
    value: int = getattr(usage, TOKEN_KINDS[kind][0])
    return value


def _format_fraction(fraction: Decimal) -> str:
    return f"{(fraction * 100).normalize():f}"
