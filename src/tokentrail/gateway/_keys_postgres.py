"""Virtual keys in Postgres (psycopg 3, `tokentrail[postgres]`): one table that the gateways of many machines
share, so a key issued on one is usable at once on all, and a key revoked on one is refused by all within
their key refresh interval.

The table is `tt_virtual_keys` in the schema `tokentrail` (or `?schema=`), created if missing; only key
hashes are stored. One connection per store, opened on first use and opened again after it breaks (a
statement that fails on a connection that was open before is tried once more on a new one).

URL: `postgresql://user@host:5432/db?schema=tokentrail`; other query parameters go to libpq (`sslmode`,
`connect_timeout` — 10 seconds unless given, …).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tokentrail.budgets.backend import split_options
from tokentrail.budgets.postgres import _SCHEMA_NAME
from tokentrail.errors import StoreError
from tokentrail.gateway.keys import _TABLE, _KeyTable

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresKeyStore"]

T = TypeVar("T")

_CONNECT_TIMEOUT = 10  # seconds (libpq's connect_timeout), unless the URL gives one


class PostgresKeyStore(_KeyTable):
    """Issued virtual keys in a Postgres table shared by gateways on several machines."""

    _marker = "%s"

    def __init__(self, conninfo: str, *, schema: str = "tokentrail") -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise StoreError(f"schema must be a plain SQL identifier, got {schema!r}")
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict, make_conninfo
        except ImportError:
            raise StoreError(
                "virtual keys in Postgres need psycopg 3: pip install 'tokentrail[postgres]'"
            ) from None
        try:
            given = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise StoreError(f"bad Postgres URL for the virtual keys: {exc}") from None
        if "connect_timeout" not in given:
            conninfo = make_conninfo(conninfo, connect_timeout=_CONNECT_TIMEOUT)
        self.conninfo = conninfo
        self.schema = schema
        self._table = f'"{schema}".tt_virtual_keys'
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[tuple[Any, ...]] | None = None
        self._create_table()

    @classmethod
    def from_url(cls, url: str) -> PostgresKeyStore:
        """`postgresql://…?schema=NAME` (the other query parameters go to libpq)."""
        base, options = split_options(url, "schema")
        return cls(base, schema=options.get("schema", "tokentrail"))

    def _create_table(self) -> None:
        def create(connection: psycopg.Connection[tuple[Any, ...]]) -> None:
            with connection.transaction():  # one creator at a time: concurrent CREATE … IF NOT EXISTS race
                connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tokentrail-keys:{self.schema}",)
                )
                connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                connection.execute(_TABLE.format(table=self._table))

        self._connected(create)

    def _run(self, statement: str, parameters: Sequence[object] = ()) -> tuple[list[tuple[Any, ...]], int]:
        def run(connection: psycopg.Connection[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], int]:
            cursor = connection.execute(statement, parameters)
            return (cursor.fetchall() if cursor.description is not None else []), cursor.rowcount

        return self._connected(run)

    def _connected(self, step: Callable[[psycopg.Connection[tuple[Any, ...]]], T]) -> T:
        """`step` on the store's connection (opened, or opened again, as needed); psycopg's errors as
        `StoreError`."""
        import psycopg

        with self._lock:
            for attempt in range(2):
                reused = self._connection is not None and not self._connection.closed
                try:
                    if not reused:
                        self._connection = psycopg.connect(self.conninfo, autocommit=True)
                    assert self._connection is not None
                    return step(self._connection)
                except psycopg.Error as exc:
                    self._discard()
                    if reused and attempt == 0 and isinstance(exc, psycopg.OperationalError):
                        continue  # the connection broke since its last use (a server restart): a new one
                    raise StoreError(f"virtual keys in Postgres schema {self.schema!r}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                connection.close()

    def drop_schema(self) -> None:
        """Drop the schema and everything in it (tests use a schema of their own)."""
        self._connected(
            lambda connection: connection.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        )

    def close(self) -> None:
        with self._lock:
            self._discard()

    def __repr__(self) -> str:
        return f"PostgresKeyStore(schema={self.schema!r})"
