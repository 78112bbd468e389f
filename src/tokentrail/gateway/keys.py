"""Virtual keys: what gateway clients send instead of a provider key.

    tokentrail keys create --user alice --team search --budget 50usd/month
    → ttk-3f9c2a71-…   (shown once)

A key stands for attribution (user, team, agent, tags) and, optionally, its own budget; the gateway
swaps it for the upstream's real key (from its environment) before forwarding. Only the SHA-256 of a
key is stored: the key holds 256 random bits, so a fast hash is as safe as a slow one, and lookups stay
cheap. Keys live in a small SQLite file (`--keys`, default `tokentrail-keys.db`) that the gateway
re-reads when it meets a key it does not know (at most once a second) and every `refresh_seconds`.
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
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from tokentrail.budgets.policy import Budget, BudgetConfigError, Window

__all__ = ["KEY_PREFIX", "KeyStore", "VirtualKey", "hash_key", "key_budget", "parse_budget_spec"]

KEY_PREFIX = "ttk-"
DEFAULT_KEYS_PATH = "tokentrail-keys.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS virtual_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    user TEXT,
    team TEXT,
    agent TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    budget TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL
)
"""
_COLUMNS = "id, key_hash, user, team, agent, tags, budget, created_at, revoked_at"


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


class KeyStore:
    """Issued virtual keys in a SQLite file (only their hashes)."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_KEYS_PATH) -> None:
        text = str(path)
        self.path = text.removeprefix("sqlite:///") if text.startswith("sqlite:///") else text
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute(_SCHEMA)

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
        if budget is not None:
            parse_budget_spec(budget)  # refuse a bad spec before anything is stored
        key_id = secrets.token_hex(4)
        secret = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        key = VirtualKey(key_id, hash_key(secret), user, team, agent, tuple(tags), budget, time.time())
        with self._lock:
            self._db.execute(
                f"INSERT INTO virtual_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.key_hash,
                    user,
                    team,
                    agent,
                    json.dumps(list(tags)),
                    budget,
                    key.created_at,
                    None,
                ),
            )
        return secret, key

    def keys(self, *, include_revoked: bool = False) -> list[VirtualKey]:
        """Every issued key (the revoked ones too when asked), oldest first."""
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM virtual_keys{where} ORDER BY created_at"
            ).fetchall()
        return [
            VirtualKey(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5] or "[]")), r[6], r[7], r[8])
            for r in rows
        ]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by its id; False when no live key has that id."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE virtual_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
        return cursor.rowcount > 0

    def ping(self) -> None:
        """Raise when the key file cannot be read."""
        with self._lock:
            self._db.execute("SELECT 1 FROM virtual_keys LIMIT 1").fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
