"""Usage stores: where records are kept and queried (`Store` protocol; `MemoryStore` built in).

`open_store(url)` turns a store URL into a store: `memory`, `sqlite:///path.db`, `postgresql://…`.
"""

from __future__ import annotations

from tokentrail.errors import StoreError
from tokentrail.stores.base import Query, Store
from tokentrail.stores.memory import MemoryStore

__all__ = ["MemoryStore", "Query", "Store", "open_store"]


def open_store(store: Store | str | None) -> Store:
    """The store `store` names (a URL), or `store` itself when it already is one; None → memory."""
    if store is None or store in ("memory", "memory://"):
        return MemoryStore()
    if isinstance(store, str):
        if store.startswith("sqlite:"):
            from tokentrail.stores.sqlite import open_sqlite_url

            return open_sqlite_url(store)
        if store.startswith(("postgresql://", "postgres://")):
            from tokentrail.stores.postgres import open_postgres_url

            return open_postgres_url(store)
        raise StoreError(
            f"unknown store {store!r}; expected 'memory', 'sqlite:///path.db' or 'postgresql://…'"
        )
    if not isinstance(store, Store):
        raise StoreError(f"{type(store).__name__} is not a store (append, summary, history, reset)")
    return store
