"""Virtual keys: what gateway clients send instead of a provider key.

    tokentrail keys create --user alice --team search --budget 50usd/month
    → ttk-3f9c2a71-…   (shown once)

A key stands for attribution (user, team, agent, tags) and, optionally, its own budget; the gateway
swaps it for the upstream's real key (from its environment) before forwarding. Only the SHA-256 of a
key is stored: the key holds 256 random bits, so a fast hash is as safe as a slow one, and lookups stay
cheap. Keys live in a key store: a small SQLite file (`--keys PATH`, default `tokentrail-keys.db`) for
the gateways of one machine, or a Postgres table (`--keys postgresql://…?schema=…`, see `_keys_postgres`)
that gateways on several machines share. A gateway re-reads the store when it meets a key it does not know
(at most once a second) and every `refresh_seconds`.

Both stores run the same statements (`_KeyTable`): they differ only in how they connect and run one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar, Protocol

from tokentrail.budgets.policy import Budget, BudgetConfigError, Window

__all__ = [
    "KEY_PREFIX",
    "KeyStore",
    "SQLiteKeyStore",
    "VirtualKey",
    "hash_key",
    "key_budget",
    "open_key_store",
    "parse_budget_spec",
]

KEY_PREFIX = "ttk-"
DEFAULT_KEYS_PATH = "tokentrail-keys.db"

# one table definition for SQLite and Postgres ("user" is a reserved word in Postgres)
_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    "user" TEXT,
    team TEXT,
    agent TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    budget TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
)
"""
_COLUMNS = 'id, key_hash, "user", team, agent, tags, budget, created_at, revoked_at'
_WIDTH = _COLUMNS.count(",") + 1


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """One issued key (without its secret): who its calls are for, and its budget spec."""

    id: str
    key_hash: str
    user: str | None
    team: str | None
    agent: str | None
    tags: tuple[str, ...]
    budget: str | None  # "50usd/month", "200000tokens/day"
    created_at: float
    revoked_at: float | None = None

    @property
    def tag(self) -> str:
        """The tag every call made with this key carries (what its budget is scoped to)."""
        return f"key:{self.id}"

    def attribution(self) -> dict[str, object]:
        """The scope values the key gives its calls: user, agent, and tags (the key's, team:…, key:…)."""
        tags = [*self.tags, self.tag]
        if self.team:
            tags.append(f"team:{self.team}")
        return {"user": self.user, "agent": self.agent, "tags": tuple(sorted(set(tags)))}


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


_SPEC = re.compile(r"^\s*\$?\s*(\d+(?:\.\d+)?)\s*(usd|\$|tokens?|tok)?\s*/\s*(\S+)\s*$", re.IGNORECASE)
_PERIODS = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}


def parse_budget_spec(spec: str) -> tuple[Decimal | None, int | None, Window]:
    """`50usd/month` → (Decimal("50"), None, monthly); `200000tokens/day` → (None, 200000, daily).

    Raises `BudgetConfigError` for anything else."""
    found = _SPEC.match(spec)
    if found is None:
        raise BudgetConfigError(
            f"budget {spec!r}: use AMOUNT usd/PERIOD or AMOUNT tokens/PERIOD, e.g. 50usd/month or "
            "200000tokens/day (PERIOD: hour, day, week, month, or a window such as rolling:1h)"
        )
    amount, unit, period = found.groups()
    window = Window.parse(_PERIODS.get(period.lower(), period))
    if unit is not None and unit.lower().startswith("tok"):
        try:
            tokens = int(amount)
        except ValueError:
            raise BudgetConfigError(f"budget {spec!r}: a token limit is a whole number") from None
        return None, tokens, window
    try:
        return Decimal(amount), None, window
    except InvalidOperation:  # pragma: no cover - the pattern only lets numbers through
        raise BudgetConfigError(f"budget {spec!r}: not an amount") from None


def key_budget(key: VirtualKey) -> Budget | None:
    """The budget a key's spec describes, scoped to that key's calls (None without a spec)."""
    if not key.budget:
        return None
    usd, tokens, window = parse_budget_spec(key.budget)
    return Budget(usd, tokens, window=window, scope={"tag": key.tag}, name=key.tag)


class KeyStore(Protocol):
    """Where issued virtual keys live (only their hashes): what `tokentrail keys` and the gateway use."""

    def create(
        self,
        *,
        user: str | None = None,
        team: str | None = None,
        agent: str | None = None,
        tags: tuple[str, ...] = (),
        budget: str | None = None,
    ) -> tuple[str, VirtualKey]:
        """Issue a key: (the secret, shown once and never stored; its record)."""
        ...

    def keys(self, *, include_revoked: bool = False) -> list[VirtualKey]:
        """Every issued key (the revoked ones too when asked), oldest first."""
        ...

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by its id; False when no live key has that id."""
        ...

    def ping(self) -> None:
        """Raise when the keys cannot be read (the gateway's readiness check)."""
        ...

    def close(self) -> None: ...


def open_key_store(location: str | os.PathLike[str] = DEFAULT_KEYS_PATH) -> KeyStore:
    """The key store at `location`: `postgresql://…[?schema=…]` (shared by gateways on several machines),
    else a SQLite file (a path or `sqlite:///path`)."""
    text = str(location)
    if text.split(":", 1)[0].lower() in ("postgresql", "postgres"):
        from tokentrail.gateway._keys_postgres import PostgresKeyStore

        return PostgresKeyStore.from_url(text)
    return SQLiteKeyStore(text)


def _issue_key(
    user: str | None, team: str | None, agent: str | None, tags: tuple[str, ...], budget: str | None
) -> tuple[str, VirtualKey]:
    """A new key: (its secret, its record). Raises `BudgetConfigError` for a bad budget spec."""
    if budget is not None:
        parse_budget_spec(budget)  # refuse a bad spec before anything is stored
    key_id = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
    return secret, VirtualKey(key_id, hash_key(secret), user, team, agent, tuple(tags), budget, time.time())


def _key_row(key: VirtualKey) -> tuple[object, ...]:
    """The row `_COLUMNS` stores for `key`."""
    return (
        key.id,
        key.key_hash,
        key.user,
        key.team,
        key.agent,
        json.dumps(list(key.tags)),
        key.budget,
        key.created_at,
        key.revoked_at,
    )


def _key_of_row(row: Sequence[Any]) -> VirtualKey:
    """The key a `_COLUMNS` row describes."""
    key_id, key_hash, user, team, agent, tags, budget, created_at, revoked_at = row
    return VirtualKey(
        key_id, key_hash, user, team, agent, tuple(json.loads(tags or "[]")), budget, created_at, revoked_at
    )


class _KeyTable(ABC):
    """The key store's statements, written once for SQLite and Postgres: a subclass names its table and
    parameter marker and runs one statement (`_run`)."""

    _marker: ClassVar[str]
    _table: str

    @abstractmethod
    def _run(self, statement: str, parameters: Sequence[object] = ()) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement: (the rows it returned, how many rows it changed)."""

    def create(
        self,
        *,
        user: str | None = None,
        team: str | None = None,
        agent: str | None = None,
        tags: tuple[str, ...] = (),
        budget: str | None = None,
    ) -> tuple[str, VirtualKey]:
        """Issue a key: (the secret, shown once and never stored; its record)."""
        secret, key = _issue_key(user, team, agent, tags, budget)
        marks = ", ".join([self._marker] * _WIDTH)
        self._run(f"INSERT INTO {self._table} ({_COLUMNS}) VALUES ({marks})", _key_row(key))
        return secret, key

    def keys(self, *, include_revoked: bool = False) -> list[VirtualKey]:
        """Every issued key (the revoked ones too when asked), oldest first."""
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows, _ = self._run(f"SELECT {_COLUMNS} FROM {self._table}{where} ORDER BY created_at, id")
        return [_key_of_row(row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by its id; False when no live key has that id."""
        mark = self._marker
        _, changed = self._run(
            f"UPDATE {self._table} SET revoked_at = {mark} WHERE id = {mark} AND revoked_at IS NULL",
            (time.time(), key_id),
        )
        return changed > 0

    def ping(self) -> None:
        """Raise when the keys cannot be read."""
        self._run(f"SELECT 1 FROM {self._table} LIMIT 1")


class SQLiteKeyStore(_KeyTable):
    """Issued virtual keys in a SQLite file (only their hashes): for the gateways of one machine."""

    _marker = "?"

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_KEYS_PATH) -> None:
        text = str(path)
        self.path = text.removeprefix("sqlite:///") if text.startswith("sqlite:///") else text
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._table = "virtual_keys"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute(_TABLE.format(table=self._table))

    def _run(self, statement: str, parameters: Sequence[object] = ()) -> tuple[list[tuple[Any, ...]], int]:
        with self._lock:
            cursor = self._db.execute(statement, parameters)
            return cursor.fetchall(), cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
