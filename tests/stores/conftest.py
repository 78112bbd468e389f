from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tokentrail.stores.base import Store
from tokentrail.stores.memory import MemoryStore
from tokentrail.stores.sqlite import SQLiteStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """A factory of fresh stores of one kind (each SQLite one in its own file, each Postgres one in its
    own schema of the real test server, dropped afterwards)."""
    opened: list[Store] = []
    url = request.getfixturevalue("postgres_server") if request.param == "postgres" else ""

    def make() -> Store:
        store: Store
        if request.param == "memory":
            return MemoryStore()
        if request.param == "sqlite":
            store = SQLiteStore(tmp_path / f"ledger{len(opened)}.db", batch_size=64, flush_interval=0.05)
        else:
            from tokentrail.stores.postgres import PostgresStore

            store = PostgresStore(
                url,
                schema=f"tt_test_{uuid.uuid4().hex[:12]}",
                batch_size=64,
                flush_interval=0.05,
                spool=tmp_path / "spool",
            )
        opened.append(store)
        return store

    yield make
    for store in opened:
        if hasattr(store, "drop_schema"):
            store.drop_schema()
        store.close()  # type: ignore[attr-defined]
