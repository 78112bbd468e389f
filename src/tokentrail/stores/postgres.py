"""The Postgres ledger (being built; see issue 6)."""

from __future__ import annotations

from tokentrail.errors import StoreError
from tokentrail.stores.base import Store


def open_postgres_url(url: str) -> Store:
    raise StoreError("the Postgres ledger is not built yet in this version")
