from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tokentrail.stores.base import Store
from tokentrail.stores.memory import MemoryStore
from tokentrail.stores.sqlite import SQLiteStore


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """A factory of fresh stores of one kind (each SQLite one in its own file)."""
    opened: list[SQLiteStore] = []

    def make() -> Store:
        if request.param == "memory":
            return MemoryStore()
        store = SQLiteStore(tmp_path / f"ledger{len(opened)}.db", batch_size=64, flush_interval=0.05)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
