from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tokentrail.stores.memory import MemoryStore
from tokentrail.stores.sqlite import SQLiteStore
from tokentrail.tracker import Tracker


@pytest.fixture(params=["memory", "sqlite"])
def make_tracker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Tracker]]:
    """A factory of trackers over a fresh memory or SQLite store."""
    opened: list[SQLiteStore] = []

    def make() -> Tracker:
        if request.param == "memory":
            return Tracker(store=MemoryStore())
        store = SQLiteStore(tmp_path / f"ledger{len(opened)}.db")
        opened.append(store)
        return Tracker(store=store)

    yield make
    for store in opened:
        store.close()
