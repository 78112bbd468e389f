"""Who may call through the gateway and what they may spend: virtual keys as the gateway sees them
(`KeyRegistry`, a cache over the `KeyStore`) and the budgets in force (`GatewayBudgets`: the configured
ones plus one per virtual key that has a budget, over one shared back-end).

A key issued while the gateway runs is found on first use (an unknown key re-reads the key store, at most
once a second) — on every gateway sharing a Postgres key store too; revocations and new key budgets are
picked up at the next refresh (`refresh_seconds` after the last read). When the set of key
budgets changes, a new `BudgetManager` over the same back-end takes over: reservations held by the old
one are settled as spend by the new one and released by the old one, so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tokentrail.gateway.keys import KeyStore, VirtualKey, hash_key, key_budget

if TYPE_CHECKING:
    from tokentrail._record import Record
    from tokentrail.budgets import Budget, BudgetBackend, BudgetManager
    from tokentrail.pricing.catalog import Catalog

__all__ = ["GatewayBudgets", "KeyRegistry"]

logger = logging.getLogger("tokentrail.gateway")

_MISS_INTERVAL = 1.0  # an unknown key re-reads the key store at most this often


class GatewayBudgets:
    """The budget manager requests reserve against (None while there is no budget at all)."""

    def __init__(self, budgets: list[Budget], backend: str | None, catalog: Catalog | None = None) -> None:
        self._configured = list(budgets)
        self._backend_url = backend
        self._backend: BudgetBackend | None = None
        self._catalog = catalog
        self._lock = threading.Lock()
        self._key_budgets: tuple[Budget, ...] = ()
        self._retired: list[BudgetManager] = []
        self.manager: BudgetManager | None = None
        if self._configured or backend:
            self._rebuild()

    @property
    def backend(self) -> BudgetBackend | None:
        return self._backend

    def use_keys(self, keys: list[VirtualKey]) -> None:
        """Budget the keys that carry a budget spec (a new manager when that set changed)."""
        wanted = tuple(b for b in (key_budget(k) for k in keys) if b is not None)
        if [b.definition() for b in wanted] == [b.definition() for b in self._key_budgets]:
            return
        with self._lock:
            self._key_budgets = wanted
            self._rebuild()

    def _rebuild(self) -> None:
        from tokentrail.budgets import BudgetManager, open_backend

        budgets = [*self._configured, *self._key_budgets]
        if not budgets and self.manager is None:
            return
        if self._backend is None:
            self._backend = open_backend(self._backend_url)  # shared by every manager; closed in close()
        previous = self.manager
        self.manager = BudgetManager(budgets, self._backend, catalog=self._catalog)
        if previous is not None:
            self._retired.append(previous)  # its reservations still settle or release through it

    def observe(self, record: Record) -> None:
        """The tracker sink: settle the call's reservation (or count spend) in the current manager."""
        manager = self.manager
        if manager is not None:
            manager.observe(record)

    def backend_errors(self) -> int:
        return sum(m.backend_errors for m in (*self._retired, *([self.manager] if self.manager else [])))

    def ping(self) -> None:
        """Raise when the budget back-end cannot be reached."""
        if self._backend is not None:
            self._backend.limits()

    def close(self) -> None:
        for manager in (*self._retired, *([self.manager] if self.manager else [])):
            manager.close()
        if self._backend is not None:
            self._backend.close()


class KeyRegistry:
    """Live virtual keys by hash, re-read from the `KeyStore` when needed."""

    def __init__(
        self,
        store: KeyStore,
        budgets: GatewayBudgets,
        refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.budgets = budgets
        self.refresh_seconds = refresh_seconds
        self.clock = clock  # monotonic seconds (injectable, for tests)
        self._by_hash: dict[str, VirtualKey] = {}
        self._loaded_at = -math.inf
        self._missed_at = -math.inf
        self._reloading: asyncio.Future[None] | None = None

    def reload(self) -> None:
        """Read every live key (blocking: call it from a thread, or at start-up)."""
        keys = self.store.keys()
        self.budgets.use_keys(keys)
        self._by_hash = {key.key_hash: key for key in keys}
        self._loaded_at = self.clock()

    async def lookup(self, secret: str) -> VirtualKey | None:
        """The live key `secret` is, or None (an unknown or revoked key)."""
        key = self._by_hash.get(hash_key(secret))
        now = self.clock()
        stale = now - self._loaded_at >= self.refresh_seconds
        if key is None and now - self._missed_at >= _MISS_INTERVAL:
            self._missed_at = now
            stale = True
        if stale:
            await self._reload_once()
            key = self._by_hash.get(hash_key(secret))
        return key

    async def _reload_once(self) -> None:
        """One reload at a time; concurrent lookups wait for it."""
        running = self._reloading
        if running is None:
            running = self._reloading = asyncio.ensure_future(asyncio.to_thread(self.reload))
            running.add_done_callback(self._reloaded)
        try:
            await asyncio.shield(running)
        except Exception:
            logger.exception("tokentrail gateway: could not re-read the virtual keys")

    def _reloaded(self, future: asyncio.Future[None]) -> None:
        self._reloading = None
        if not future.cancelled() and future.exception() is not None:
            self._loaded_at = self.clock()  # retry at the next refresh, not on every request
