"""Usage stores: where records are kept and queried (`Store` protocol; `MemoryStore` built in)."""

from tokentrail.stores.base import Query, Store
from tokentrail.stores.memory import MemoryStore

__all__ = ["MemoryStore", "Query", "Store"]
