"""A store wrapper that answers queries and refuses every write, so the dashboard cannot touch the ledger."""

from __future__ import annotations

from pathlib import Path

from tokentrail._record import Record, SummaryRow
from tokentrail.errors import StoreError
from tokentrail.stores import open_store
from tokentrail.stores.base import Query, Store

__all__ = ["ReadOnlyStore", "open_read_only"]


class ReadOnlyStore:
    """`summary` and `history` pass through to `inner`; `append` and `reset` raise StoreError."""

    __slots__ = ("inner",)

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def append(self, record: Record) -> None:
        raise StoreError("this store is opened read-only (tokentrail serve never writes the ledger)")

    def summary(self, query: Query, by: tuple[str, ...]) -> list[SummaryRow]:
        return self.inner.summary(query, by)

    def history(self, query: Query, limit: int | None = None) -> list[Record]:
        return self.inner.history(query, limit)

    def reset(self, query: Query) -> int:
        raise StoreError("this store is opened read-only (tokentrail serve never writes the ledger)")

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def __repr__(self) -> str:
        return f"<ReadOnlyStore {self.inner!r}>"


def open_read_only(url: str) -> ReadOnlyStore:
    """The store `url` names, wrapped read-only; a SQLite file must already exist (none is created)."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").partition("?")[0]
        if path != ":memory:" and not Path(path).is_file():
            raise StoreError(f"no ledger at {path!r}; tokentrail serve does not create one")
    return ReadOnlyStore(open_store(url))
