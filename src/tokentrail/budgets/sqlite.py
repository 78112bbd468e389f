"""Budget counters in a SQLite file (it may be the ledger's): every operation is one `BEGIN IMMEDIATE`
transaction, so threads and processes on one machine share limits exactly. WAL mode keeps readers
unblocked. Money is stored as decimal text of exact 10**-24 USD units (more than 64 bits)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from tokentrail.budgets import _engine
from tokentrail.budgets._engine import NO_LEASE, Head, head_from_row
from tokentrail.budgets.backend import HeadRow, ReserveOutcome, SettleOutcome, Slot, Tally
from tokentrail.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's busy timeout alone serializes writers
    fcntl = None  # type: ignore[assignment]

__all__ = ["SQLiteBackend"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tt_budget_heads (
    head TEXT PRIMARY KEY,
    budget TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    window_key TEXT NOT NULL,
    spent_units TEXT NOT NULL,
    spent_tokens INTEGER NOT NULL,
    reserved_units TEXT NOT NULL,
    reserved_tokens INTEGER NOT NULL,
    alert_level INTEGER NOT NULL,
    next_lease REAL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tt_budget_heads_budget ON tt_budget_heads (budget, expires_at);
CREATE INDEX IF NOT EXISTS tt_budget_heads_expiry ON tt_budget_heads (expires_at);
CREATE TABLE IF NOT EXISTS tt_budget_entries (
    reservation TEXT NOT NULL,
    head TEXT NOT NULL,
    units TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    lease_until REAL NOT NULL,
    PRIMARY KEY (reservation, head)
) WITHOUT ROWID;
DROP INDEX IF EXISTS tt_budget_entries_head;
CREATE TABLE IF NOT EXISTS tt_budget_definitions (
    budget TEXT PRIMARY KEY,
    definition TEXT,
    limit_override TEXT
);
"""

_HEAD_COLUMNS = (
    "head, budget, scope_key, window_key, spent_units, spent_tokens, reserved_units, reserved_tokens, "
    "alert_level, next_lease, expires_at"
)
_UPSERT = (
    f"INSERT INTO tt_budget_heads ({_HEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (head) DO UPDATE SET spent_units = excluded.spent_units, "
    "spent_tokens = excluded.spent_tokens, reserved_units = excluded.reserved_units, "
    "reserved_tokens = excluded.reserved_tokens, alert_level = excluded.alert_level, "
    "next_lease = excluded.next_lease, expires_at = excluded.expires_at"
)
_SELECT_ONE = f"SELECT {_HEAD_COLUMNS} FROM tt_budget_heads WHERE head = ?"
_ADD_ENTRY = "INSERT OR REPLACE INTO tt_budget_entries (reservation, head, units, tokens, lease_until) VALUES (?, ?, ?, ?, ?)"
_POP_ENTRIES = "DELETE FROM tt_budget_entries WHERE reservation = ? RETURNING head, units, tokens"
_SWEEP_SECONDS = 300.0


class SQLiteBackend:
    """Budget counters in the SQLite database at `path`, safe across threads and processes.

    One connection per process, used by one thread at a time; `timeout` is how long a writer waits for
    another process's transaction before giving up with `StoreError`.
    """

    blocking = True

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.url = f"sqlite:///{self.path}"
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._gate: int | None = None
        self._next_sweep = 0.0
        with self._transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # -- connection and transactions --------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if self.path != ":memory:":
                directory = os.path.dirname(os.path.abspath(self.path))
                os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint (copy the WAL back into the file, with an fsync) every ~40 MB rather than every
            # 4 MB: budget writes are small and many, and a checkpoint stalls the writers queued behind it.
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            self._conn, self._pid = conn, os.getpid()
            self._gate = _open_gate(self.path)
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            gate = self._gate
            if gate is not None:
                fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise StoreError(f"budget database {self.path!r}: {exc}") from exc
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK")
                    raise StoreError(f"budget database {self.path!r}: {exc}") from exc
            finally:
                if gate is not None:
                    fcntl.flock(gate, fcntl.LOCK_UN)

    def _run(self, now: float, step: Callable[[_SQLiteTxn], T]) -> T:
        with self._transaction() as conn:
            txn = _SQLiteTxn(conn)
            if now >= self._next_sweep:
                self._sweep(conn, now)
            return step(txn)

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        """Forget heads whose window (and its grace period) has ended, with their entries."""
        self._next_sweep = now + _SWEEP_SECONDS
        conn.execute(
            "DELETE FROM tt_budget_entries WHERE head IN (SELECT head FROM tt_budget_heads WHERE expires_at <= ?)",
            (now,),
        )
        conn.execute("DELETE FROM tt_budget_heads WHERE expires_at <= ?", (now,))

    # -- counters -------------------------------------------------------------------------------------------

    def reserve(
        self,
        reservation: str,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        lease_until: float,
    ) -> ReserveOutcome:
        if len(slots) == 1 and len(slots[0].heads) == 1:  # the usual call: one budget, one head
            with self._transaction() as conn:
                if now >= self._next_sweep:
                    self._sweep(conn, now)
                outcome = _reserve_one(conn, reservation, slots[0], charges[0], now, lease_until)
                if outcome is not None:
                    return outcome
                return _engine.reserve(_SQLiteTxn(conn), reservation, slots, charges, now, lease_until)
        return self._run(now, lambda txn: _engine.reserve(txn, reservation, slots, charges, now, lease_until))

    def settle(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
    ) -> SettleOutcome:
        if len(slots) == 1 and len(slots[0].heads) == 1:
            with self._transaction() as conn:
                return _settle_one(conn, reservation, slots[0], charges[0])
        return self._run(now, lambda txn: _engine.settle(txn, reservation, slots, charges, now))

    def release(self, reservation: str, slots: Sequence[Slot], now: float) -> None:
        self._run(now, lambda txn: _engine.release(txn, reservation, slots))

    def read(self, slots: Sequence[Slot], now: float) -> list[Tally]:
        return self._run(now, lambda txn: _engine.tallies(txn, slots, now))

    def heads(self, budget: str, now: float) -> list[HeadRow]:
        def listing(txn: _SQLiteTxn) -> list[HeadRow]:
            rows = txn.conn.execute(
                f"SELECT {_HEAD_COLUMNS} FROM tt_budget_heads WHERE budget = ? AND expires_at > ?",
                (budget, now),
            ).fetchall()
            found = {row[0]: head_from_row(row) for row in rows}
            _engine._purge(txn, found, now)
            txn.save(found.values())
            return [head.row() for head in found.values()]

        return self._run(now, listing)

    # -- definitions and operator actions ---------------------------------------------------------------

    def register(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO tt_budget_definitions (budget, definition) VALUES (?, ?) "
                "ON CONFLICT (budget) DO UPDATE SET definition = excluded.definition",
                [(name, json.dumps(definition, sort_keys=True)) for name, definition in definitions.items()],
            )

    def definitions(self) -> dict[str, dict[str, Any]]:
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT budget, definition FROM tt_budget_definitions WHERE definition IS NOT NULL"
            ).fetchall()
        return {name: json.loads(text) for name, text in rows}

    def set_limits(self, budget: str, limits: tuple[int | None, int | None] | None) -> None:
        text = None if limits is None else json.dumps([None if v is None else str(v) for v in limits])
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO tt_budget_definitions (budget, limit_override) VALUES (?, ?) "
                "ON CONFLICT (budget) DO UPDATE SET limit_override = excluded.limit_override",
                (budget, text),
            )

    def limits(self) -> dict[str, tuple[int | None, int | None]]:
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT budget, limit_override FROM tt_budget_definitions WHERE limit_override IS NOT NULL"
                )
                .fetchall()
            )
        return {name: _limits(text) for name, text in rows}

    def reset(self, budget: str, scope_key: str | None = None) -> int:
        where = "budget = ?" + ("" if scope_key is None else " AND scope_key = ?")
        params = (budget,) if scope_key is None else (budget, scope_key)
        with self._transaction() as conn:
            conn.execute(
                f"DELETE FROM tt_budget_entries WHERE head IN (SELECT head FROM tt_budget_heads WHERE {where})",
                params,
            )
            return conn.execute(f"DELETE FROM tt_budget_heads WHERE {where}", params).rowcount

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                if self._conn is not None:
                    self._conn.close()
                if self._gate is not None:
                    os.close(self._gate)
            self._conn, self._gate = None, None

    def __repr__(self) -> str:
        return f"SQLiteBackend({self.path!r})"


class _SQLiteTxn:
    """The engine's view of one open `BEGIN IMMEDIATE` transaction."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def lock(self, slots: Sequence[Slot]) -> dict[str, Head]:
        keys = [key for slot in slots for key in slot.heads]
        found: dict[str, Head] = {}
        if len(keys) == 1:
            for row in self.conn.execute(_SELECT_ONE, keys):
                found[row[0]] = head_from_row(row)
            keys = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                f"SELECT {_HEAD_COLUMNS} FROM tt_budget_heads WHERE head IN ({marks})", chunk
            ):
                found[row[0]] = head_from_row(row)
        for slot in slots:
            for key in slot.heads:
                if key not in found:
                    found[key] = Head(key, slot.budget, slot.scope_key, slot.window_key, slot.expires_at)
        return found

    def take_expired(self, heads: Sequence[Head], now: float) -> Iterable[tuple[str, int, int]]:
        marks = ",".join("?" * len(heads))
        rows = self.conn.execute(
            f"DELETE FROM tt_budget_entries WHERE head IN ({marks}) AND lease_until <= ? "
            "RETURNING head, units, tokens",
            [*(head.key for head in heads), now],
        ).fetchall()
        return [(head, int(units), tokens) for head, units, tokens in rows]

    def next_lease(self, head: str) -> float:
        row = self.conn.execute(
            "SELECT MIN(lease_until) FROM tt_budget_entries WHERE head = ?", (head,)
        ).fetchone()
        return NO_LEASE if row is None or row[0] is None else float(row[0])

    def add_entries(
        self, reservation: str, entries: Sequence[tuple[str, int, int]], lease_until: float
    ) -> None:
        rows = [(reservation, head, str(units), tokens, lease_until) for head, units, tokens in entries]
        if len(rows) == 1:
            self.conn.execute(_ADD_ENTRY, rows[0])
        else:
            self.conn.executemany(_ADD_ENTRY, rows)

    def pop_entries(self, reservation: str) -> Iterable[tuple[str, int, int]]:
        rows = self.conn.execute(_POP_ENTRIES, (reservation,)).fetchall()
        return [(head, int(units), tokens) for head, units, tokens in rows]

    def save(self, heads: Iterable[Head]) -> None:
        rows = []
        for head in heads:
            if head.dirty:
                head.dirty = False
                rows.append(
                    (
                        head.key,
                        head.budget,
                        head.scope_key,
                        head.window_key,
                        str(head.spent_units),
                        head.spent_tokens,
                        str(head.reserved_units),
                        head.reserved_tokens,
                        head.alert_level,
                        None if head.next_lease == NO_LEASE else head.next_lease,
                        head.expires_at,
                    )
                )
        if len(rows) == 1:
            self.conn.execute(_UPSERT, rows[0])
        elif rows:
            self.conn.executemany(_UPSERT, rows)


# -- one budget, one head: the engine's rules written out against a single row ------------------------------


def _reserve_one(
    conn: sqlite3.Connection,
    reservation: str,
    slot: Slot,
    charge: tuple[int, int],
    now: float,
    lease_until: float,
) -> ReserveOutcome | None:
    """`_engine.reserve` for one slot of one head (None: a lease has passed, purge with the engine)."""
    key = slot.heads[0]
    row = conn.execute(_SELECT_ONE, (key,)).fetchone()
    if row is None:
        spent_units = spent_tokens = reserved_units = reserved_tokens = level = 0
        next_lease, expires_at = NO_LEASE, slot.expires_at
    else:
        if row[9] is not None and row[9] <= now:
            return None
        spent_units, spent_tokens = int(row[4]), row[5]
        reserved_units, reserved_tokens, level = int(row[6]), row[7], row[8]
        next_lease = NO_LEASE if row[9] is None else row[9]
        expires_at = row[10]
    window = (spent_units, spent_tokens, reserved_units, reserved_tokens)
    units, tokens = charge
    if slot.enforce:
        limit = slot.limit_units
        if limit is not None and spent_units + reserved_units + units > limit:
            return (0, (window,))
        limit = slot.limit_tokens
        if limit is not None and spent_tokens + reserved_tokens + tokens > limit:
            return (0, (window,))
    changed = expires_at < slot.expires_at
    if changed:
        expires_at = slot.expires_at
    if units or tokens:
        conn.execute(_ADD_ENTRY, (reservation, key, str(units), tokens, lease_until))
        reserved_units += units
        reserved_tokens += tokens
        next_lease = min(next_lease, lease_until)
        changed = True
    if changed:
        conn.execute(
            _UPSERT,
            (
                key,
                slot.budget,
                slot.scope_key,
                slot.window_key,
                str(spent_units),
                spent_tokens,
                str(reserved_units),
                reserved_tokens,
                level,
                None if next_lease == NO_LEASE else next_lease,
                expires_at,
            ),
        )
    return (None, (window,))


def _settle_one(
    conn: sqlite3.Connection, reservation: str | None, slot: Slot, charge: tuple[int, int]
) -> SettleOutcome:
    """`_engine.settle` for one slot of one head."""
    key = slot.heads[0]
    row = conn.execute(_SELECT_ONE, (key,)).fetchone()
    if row is None:
        spent_units = spent_tokens = reserved_units = reserved_tokens = fired = 0
        next_lease, expires_at = None, slot.expires_at
    else:
        spent_units, spent_tokens = int(row[4]), row[5]
        reserved_units, reserved_tokens, fired = int(row[6]), row[7], row[8]
        next_lease, expires_at = row[9], max(row[10], slot.expires_at)
    if reservation is not None:
        for head, units, tokens in conn.execute(_POP_ENTRIES, (reservation,)).fetchall():
            if head == key:
                reserved_units -= int(units)
                reserved_tokens -= tokens
    spent_units += charge[0]
    spent_tokens += charge[1]
    level = _engine.level_of(slot, spent_units, spent_tokens)
    crossed: tuple[int, ...] = ()
    if level > fired:
        crossed = tuple(range(fired, level))
        fired = level
    conn.execute(
        _UPSERT,
        (
            key,
            slot.budget,
            slot.scope_key,
            slot.window_key,
            str(spent_units),
            spent_tokens,
            str(reserved_units),
            reserved_tokens,
            fired,
            next_lease,
            expires_at,
        ),
    )
    return ((spent_units, spent_tokens, reserved_units, reserved_tokens),), (crossed,)


def _open_gate(path: str) -> int | None:
    """A lock file beside the database that writers queue on in the kernel (POSIX only).

    SQLite's own busy handler polls with sleeps of 1 ms and more, which is most of the time a contended
    write waits; an exclusive `flock` wakes the next process as soon as the lock is free. Writers that do
    not take it (the ledger, other tools) are still serialized by `BEGIN IMMEDIATE`.
    """
    if fcntl is None or path == ":memory:" or path.startswith("file:"):
        return None
    try:
        return os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None


def _limits(text: str) -> tuple[int | None, int | None]:
    units, tokens = json.loads(text)
    return (None if units is None else int(units), None if tokens is None else int(tokens))
