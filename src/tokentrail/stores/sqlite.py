"""The SQLite store: a durable ledger in one file, shared safely by many processes.

- WAL mode, `busy_timeout` and retried `BEGIN IMMEDIATE` transactions, so many processes can append
  to the same file; every record has a unique id and inserts are idempotent (a replayed record is
  ignored, never counted twice).
- `append` queues the record; a background writer thread commits the queue in batches (when it
  reaches `batch_size`, every `flush_interval` seconds, on `flush()`/`close()` and at exit).
  With `durable=True` the record is committed before `append` returns. In the default mode a
  `kill -9` loses at most the records still queued (at most `flush_interval` seconds' worth).
- Costs are stored exactly: the integer yocto-dollar amount as decimal text, summed with exact
  Python integers (a SQL aggregate registered on the connection).
- An hourly rollup table (hour × agent × session × user × tool × model × provider × tags × path ×
  status × priced) is maintained in the same transaction as the raw rows; summaries read the rollup
  for whole hours and raw rows only for the hours that `since`/`until` cut through.
- The file is created with mode 0600; the schema is versioned (`schema_version`) and migrated on open;
  a newer, unknown version is refused with `StoreError`. No prompt or response text is stored.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from tokentrail._record import GroupValue, Record, SummaryRow, intern_attribution
from tokentrail._types import TOKEN_FIELDS, PriceRule, Usage, UsageStatus
from tokentrail.errors import StoreError
from tokentrail.stores.base import (
    CALLS,
    COST,
    COST_ON_PROVIDER_CALLS,
    DURATION,
    GROUP_KEYS,
    HOUR_US,
    PROVIDER_CALLS,
    PROVIDER_COST,
    TIME_KEYS,
    TIMED,
    TIMED_OUTPUT,
    TOKENS,
    VECTOR_SIZE,
    Aggregate,
    Query,
    provider_cost_units,
    time_bucket,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "open_sqlite_url"]

SCHEMA_VERSION = 3
_MAX_PENDING = 1_000_000  # queued records kept while the file cannot be written
_T = TypeVar("_T")

_TOKEN_COLUMNS = tuple(f"t_{name}" for name in TOKEN_FIELDS)
_KEY_COLUMNS = ("agent", "session", "user", "tool", "model", "provider", "tags", "path", "status", "priced")
_PLAIN_FILTERS = {"agent", "session", "user", "tool", "model", "provider", "status"}
_RECORD_COLUMNS = (
    "id",
    "ts",
    "hour",
    *_KEY_COLUMNS,
    "usage_reason",
    "cost",
    "unpriced_reason",
    "duration",
    "provider_cost",
    "pc_units",
    "context",
    "rule",
    *_TOKEN_COLUMNS,
    "est_input",
    "ttft",
)
_ROLLUP_SUMS = (
    "calls",
    "cost",
    "duration",
    "timed",
    "timed_output",
    "provider_cost",
    "provider_calls",
    "cost_on_provider",
)


def _q(name: str) -> str:
    return f'"{name}"'


def _schema_v1() -> list[str]:
    tokens_int = ", ".join(f"{_q(c)} INTEGER NOT NULL DEFAULT 0" for c in _TOKEN_COLUMNS)
    keys = ", ".join(_q(c) for c in _KEY_COLUMNS)
    return [
        "CREATE TABLE records ("
        " id TEXT PRIMARY KEY, ts INTEGER NOT NULL, hour INTEGER NOT NULL,"
        ' agent TEXT, session TEXT, "user" TEXT, tool TEXT, model TEXT, provider TEXT,'
        " tags TEXT NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL, priced INTEGER NOT NULL,"
        " usage_reason TEXT, cost TEXT, unpriced_reason TEXT, duration REAL, provider_cost TEXT,"
        f" pc_units TEXT, context TEXT, rule TEXT, {tokens_int})",
        "CREATE INDEX records_ts ON records (ts)",
        "CREATE INDEX records_hour ON records (hour)",
        "CREATE TABLE rollup_hour ("
        " cell TEXT PRIMARY KEY, hour INTEGER NOT NULL,"
        ' agent TEXT, session TEXT, "user" TEXT, tool TEXT, model TEXT, provider TEXT,'
        " tags TEXT NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL, priced INTEGER NOT NULL,"
        " calls INTEGER NOT NULL, cost TEXT NOT NULL, duration REAL NOT NULL, timed INTEGER NOT NULL,"
        " timed_output INTEGER NOT NULL, provider_cost TEXT NOT NULL, provider_calls INTEGER NOT NULL,"
        f" cost_on_provider TEXT NOT NULL, {tokens_int})",
        f"CREATE INDEX rollup_hour_keys ON rollup_hour (hour, {keys})",
    ]


def _schema_v2() -> list[str]:
    """v2: the pre-call estimate of a record's input tokens (NULL when none was given)."""
    return ["ALTER TABLE records ADD COLUMN est_input INTEGER"]


def _schema_v3() -> list[str]:
    """v3: the time to first token of a streamed call, in ms (NULL when not measured)."""
    return ["ALTER TABLE records ADD COLUMN ttft REAL"]


# version → statements that bring a database at version-1 to it
_MIGRATIONS: dict[int, Callable[[], list[str]]] = {1: _schema_v1, 2: _schema_v2, 3: _schema_v3}


class _BigSum:
    """SQL aggregate: exact sum of integers stored as decimal text (NULLs skipped)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, value: object) -> None:
        if value is not None:
            self.total += int(value)  # type: ignore[call-overload]

    def finalize(self) -> str:
        return str(self.total)


def _bigadd(a: object, b: object) -> str:
    return str(int(a or 0) + int(b or 0))  # type: ignore[call-overload]


def open_sqlite_url(url: str, **options: Any) -> SQLiteStore:
    """`sqlite:///relative.db`, `sqlite:////absolute.db` or `sqlite:///:memory:` → a store."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StoreError(f"bad SQLite store URL {url!r}; expected sqlite:///path/to/file.db")
    path = url[len(prefix) :]
    path, _, query = path.partition("?")
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        if name == "durable":
            options["durable"] = value.lower() in ("1", "true", "yes", "on")
        else:
            raise StoreError(f"unknown option {name!r} in store URL {url!r} (known: durable)")
    return SQLiteStore(path, **options)


class SQLiteStore:
    """Records in a SQLite file; same `Store` protocol and semantics as `MemoryStore`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        durable: bool = False,
        batch_size: int = 2000,
        flush_interval: float = 0.5,
        timeout: float = 30.0,
    ) -> None:
        self.path = str(path)
        self.durable = durable
        self.batch_size = max(1, int(batch_size))
        self.flush_interval = float(flush_interval)
        self._pending: list[Record] = []
        self._pending_lock = threading.Lock()
        self._db_lock = threading.RLock()
        self._wake = threading.Condition(self._pending_lock)
        self._closed = False
        self._rule_json: dict[int, tuple[PriceRule, str]] = {}
        self._rules: dict[str, PriceRule] = {}
        self._scoped: dict[int, tuple[Any, ...]] = {}  # id(attribution) → its columns
        self._timeout = float(timeout)
        self._conn = self._connect(timeout)
        self._pid = os.getpid()
        self._writer: threading.Thread | None = None
        if not durable:
            self._writer = threading.Thread(target=self._run_writer, name="tokentrail-sqlite", daemon=True)
            self._writer.start()
        ref = weakref.ref(self)
        self._atexit = lambda: _close_ref(ref)
        atexit.register(self._atexit)

    # -- opening -----------------------------------------------------------------------------------

    def _connect(self, timeout: float) -> sqlite3.Connection:
        memory = self.path in (":memory:", "")
        if not memory:
            target = Path(self.path)
            if target.is_dir():
                raise StoreError(f"cannot open SQLite store {self.path!r}: it is a directory")
            if not target.exists():
                try:
                    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                    os.close(fd)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise StoreError(f"cannot create SQLite store {self.path!r}: {exc}") from exc
        try:
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path!r}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if not memory:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"SQLite store {self.path!r} cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL" if not self.durable else "PRAGMA synchronous = FULL")
            conn.create_aggregate("bigsum", 1, _BigSum)  # type: ignore[arg-type]
            conn.create_function("bigadd", 2, _bigadd, deterministic=True)
            self._migrate(conn)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot use SQLite store {self.path!r}: {_describe(exc)}") from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        def step() -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                version = 0
                if "schema_version" in tables:
                    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                    version = int(row[0] or 0)
                elif tables:
                    raise StoreError(f"{self.path!r} is a SQLite database but not a tokentrail store")
                else:
                    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"SQLite store {self.path!r} has schema version {version}, newer than this "
                        f"tokentrail understands ({SCHEMA_VERSION}); upgrade tokentrail"
                    )
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[target]():
                        conn.execute(statement)
                    conn.execute("DELETE FROM schema_version")
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        _retry(step, self._timeout)

    # -- writing -----------------------------------------------------------------------------------

    def append(self, record: Record) -> None:
        """Queue `record` (commit it before returning when durable)."""
        if self._closed:
            raise StoreError(f"SQLite store {self.path!r} is closed")
        if self._pid != os.getpid():
            raise StoreError("a SQLiteStore cannot be shared across fork(); open one per process")
        if self.durable:
            with self._db_lock:
                self._write([record])
            return
        with self._pending_lock:
            self._pending.append(record)
            if len(self._pending) >= self.batch_size:
                self._wake.notify()

    def flush(self) -> None:
        """Commit every queued record now."""
        with self._db_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                self._write(batch)
            except BaseException:
                with self._pending_lock:  # keep them for the next attempt (bounded)
                    self._pending[:0] = batch[-_MAX_PENDING:]
                    del self._pending[_MAX_PENDING:]
                raise

    def close(self) -> None:
        """Flush, stop the writer and close the file (idempotent)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            with self._pending_lock:
                self._wake.notify_all()
            if self._writer is not None and self._writer is not threading.current_thread():
                self._writer.join(timeout=5)
            atexit.unregister(self._atexit)
            with self._db_lock:
                self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run_writer(self) -> None:
        while True:
            with self._pending_lock:
                if not self._closed and len(self._pending) < self.batch_size:
                    self._wake.wait(self.flush_interval)
                if self._closed:
                    return
            try:
                self.flush()
            except Exception:  # keep the records queued; try again next round
                import logging

                logging.getLogger("tokentrail").exception("tokentrail: SQLite store write failed")
                time.sleep(min(self.flush_interval, 1.0))

    def _write(self, batch: list[Record]) -> None:
        """Insert the records not yet in the file and update the rollup, in one transaction."""
        if os.getpid() != self._pid:
            raise StoreError("a SQLiteStore cannot be shared across fork(); open one per process")
        rows = [self._row(record) for record in batch]
        conn = self._conn

        def transaction() -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                ids = [row[0] for row in rows]
                existing: set[str] = set()
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    existing.update(
                        r[0] for r in conn.execute(f"SELECT id FROM records WHERE id IN ({marks})", chunk)
                    )
                fresh: dict[str, tuple[Any, ...]] = {}
                for row in rows:
                    if row[0] not in existing:
                        fresh.setdefault(row[0], row)
                if fresh:
                    conn.executemany(_INSERT_RECORD, fresh.values())
                    conn.executemany(_UPSERT_ROLLUP, _rollup_deltas(fresh.values()))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        try:
            _retry(transaction, self._timeout)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to SQLite store {self.path!r}: {_describe(exc)}") from exc

    def _row(self, record: Record) -> tuple[Any, ...]:
        usage = record.usage
        attribution = record.attribution
        reported = record.provider_cost
        scoped = self._scoped.get(id(attribution))
        if scoped is None or scoped[0] is not attribution:
            scoped = (
                attribution,
                attribution.agent,
                attribution.session,
                attribution.user,
                attribution.tool,
                json.dumps(list(attribution.tags)),
                json.dumps(list(attribution.path)),
            )
            if len(self._scoped) >= 4096:
                self._scoped.clear()
            self._scoped[id(attribution)] = scoped
        return (
            f"{record.id:032x}",
            record.timestamp_us,
            record.timestamp_us // HOUR_US,
            *scoped[1:5],
            record.model,
            record.provider,
            *scoped[5:],
            usage.status.value,
            int(record.cost_units is not None),
            usage.reason,
            None if record.cost_units is None else str(record.cost_units),
            record.unpriced_reason,
            record.duration_ms,
            None if reported is None else str(reported),
            None if reported is None else str(provider_cost_units(reported)),
            None if record.context is None else json.dumps(dict(record.context), sort_keys=True),
            self._rule_text(record.price_rule),
            *(getattr(usage, name) for name in TOKEN_FIELDS),
            _estimate_column(record.estimated_input_tokens),
            record.ttft_ms,
        )

    def _rule_text(self, rule: PriceRule | None) -> str | None:
        if rule is None:
            return None
        known = self._rule_json.get(id(rule))
        if known is not None and known[0] is rule:
            return known[1]
        text = json.dumps(rule.as_dict(), sort_keys=True, default=str)
        if len(self._rule_json) > 4096:
            self._rule_json.clear()
        self._rule_json[id(rule)] = (rule, text)
        return text

    # -- reading -----------------------------------------------------------------------------------

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        self.flush()
        with self._db_lock:
            try:
                return _retry(lambda: work(self._conn), self._timeout)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read SQLite store {self.path!r}: {_describe(exc)}") from exc

    def summary(self, query: Query, by: tuple[str, ...]) -> list[SummaryRow]:
        """One row per group of `by` over the records `query` selects (rollups for whole hours)."""
        unknown = [name for name in by if name not in GROUP_KEYS]
        if unknown:
            raise ValueError(f"cannot group by {', '.join(unknown)}; known: {', '.join(GROUP_KEYS)}")
        where, params, check = _where(query)
        columns: list[str] = ["priced", "status"]
        for name in by:
            column = {"tag": "tags", "hour": "hour", "day": "hour", "month": "hour"}.get(name, name)
            if column not in columns:
                columns.append(column)
        if check is not None:
            columns += [c for c in ("tags", "path") if c not in columns]
        group_sql = ", ".join(_q(c) for c in columns)
        since, until = query.since_us, query.until_us
        parts: list[tuple[str, str, list[Any]]] = []  # (table expression, where, params)
        if since is None and until is None:
            parts.append(("rollup_hour", where, params))
        else:
            low = None if since is None else -(-since // HOUR_US)  # first whole hour
            high = None if until is None else until // HOUR_US  # first hour not whole
            whole = list((where and [where]) or [])
            whole_params = list(params)
            if low is not None:
                whole.append("hour >= ?")
                whole_params.append(low)
            if high is not None:
                whole.append("hour < ?")
                whole_params.append(high)
            parts.append(("rollup_hour", " AND ".join(whole), whole_params))
            # raw rows only in the hours since/until cut through: [since, low) and [high, until)
            if low is not None and high is not None and low > high:  # inside one hour
                ranges = [(since, until)]
            else:
                ranges = []
                if since is not None and low is not None:
                    ranges.append((since, low * HOUR_US))
                if until is not None and high is not None:
                    ranges.append((high * HOUR_US, until))
            for first, last in ranges:
                if first is not None and last is not None and first >= last:
                    continue
                cut = [*((where and [where]) or []), "ts >= ?", "ts < ?"]
                parts.append(("records", " AND ".join(cut), [*params, first, last]))

        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            found: list[tuple[Any, ...]] = []
            for table, condition, values in parts:
                sums = _ROLLUP_SELECT if table == "rollup_hour" else _RECORDS_SELECT
                sql = f"SELECT {group_sql}, {sums} FROM {table}"
                if condition:
                    sql += f" WHERE {condition}"
                found.extend(conn.execute(f"{sql} GROUP BY {group_sql}", values))
            return found

        found = self._read(work)
        width = len(columns)
        index = {name: i for i, name in enumerate(columns)}
        groups: dict[tuple[GroupValue, ...], Aggregate] = {}
        for row in found:
            if check is not None and not check(row[index["path"]], row[index["tags"]]):
                continue
            vector = _vector(row[width:])
            for group in _groups(row, index, by):
                aggregate = groups.get(group)
                if aggregate is None:
                    aggregate = groups[group] = Aggregate()
                aggregate.add(vector, bool(row[0]), row[1])
        rows = [aggregate.row(dict(zip(by, group, strict=True))) for group, aggregate in groups.items()]
        if any(name in TIME_KEYS for name in by):
            rows.sort(key=lambda r: [_sortable(value) for value in r.group.values()])
        else:
            rows.sort(key=lambda r: (-r.cost_units, -r.calls, [_sortable(v) for v in r.group.values()]))
        return rows

    def history(self, query: Query, limit: int | None = None) -> list[Record]:
        """The records `query` selects, oldest first; with `limit`, only the last `limit` of them."""
        if limit is not None and limit <= 0:
            return []
        where, params, check = _where(query, raw=True)
        sql = f"SELECT {', '.join(_q(c) for c in _RECORD_COLUMNS)} FROM records"
        if where:
            sql += f" WHERE {where}"
        if limit is not None and check is None:
            sql += f" ORDER BY ts DESC, id DESC LIMIT {int(limit)}"
        else:
            sql += " ORDER BY ts, id"

        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        rows = self._read(work)
        if limit is not None and check is None:
            rows.reverse()
        path_at, tags_at = _RECORD_COLUMNS.index("path"), _RECORD_COLUMNS.index("tags")
        if check is not None:
            rows = [row for row in rows if check(row[path_at], row[tags_at])]
            if limit is not None:
                rows = rows[-limit:]
        return [self._record(row) for row in rows]

    def reset(self, query: Query) -> int:
        """Forget the records `query` selects; returns how many were removed."""
        where, params, check = _where(query, raw=True)

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                sql = "SELECT id, hour, path, tags FROM records" + (f" WHERE {where}" if where else "")
                doomed = [
                    (row[0], row[1])
                    for row in conn.execute(sql, params)
                    if check is None or check(row[2], row[3])
                ]
                for start in range(0, len(doomed), 500):
                    chunk = [row[0] for row in doomed[start : start + 500]]
                    conn.execute(f"DELETE FROM records WHERE id IN ({','.join('?' * len(chunk))})", chunk)
                hours = sorted({row[1] for row in doomed})
                for hour in hours:  # rebuild the rollup of every touched hour from the raw rows
                    conn.execute("DELETE FROM rollup_hour WHERE hour = ?", (hour,))
                    raw = conn.execute(
                        f"SELECT {', '.join(_q(c) for c in _RECORD_COLUMNS)} FROM records WHERE hour = ?",
                        (hour,),
                    ).fetchall()
                    conn.executemany(_UPSERT_ROLLUP, _rollup_deltas(raw))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return len(doomed)

        return self._read(work)

    def stats(self) -> dict[str, int]:
        """Records, unpriced records, rollup rows and file size in bytes."""

        def work(conn: sqlite3.Connection) -> tuple[int, int, int]:
            records, unpriced = conn.execute(
                "SELECT count(*), coalesce(sum(priced = 0), 0) FROM records"
            ).fetchone()
            cells = conn.execute("SELECT count(*) FROM rollup_hour").fetchone()[0]
            return int(records), int(unpriced), int(cells)

        records, unpriced, cells = self._read(work)
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += os.path.getsize(self.path + suffix)
        return {"records": records, "unpriced": unpriced, "rollup_rows": cells, "file_bytes": size}

    def _record(self, row: Sequence[Any]) -> Record:
        values = dict(zip(_RECORD_COLUMNS, row, strict=True))
        counts = {
            name: int(values[column]) for name, column in zip(TOKEN_FIELDS, _TOKEN_COLUMNS, strict=True)
        }
        usage = Usage(**counts, status=UsageStatus(values["status"]), reason=values["usage_reason"])
        rule = None
        if values["rule"] is not None:
            rule = self._rules.get(values["rule"])
            if rule is None:
                rule = PriceRule.from_dict(json.loads(values["rule"]))
                if rule is not None and len(self._rules) < 4096:
                    self._rules[values["rule"]] = rule
        return Record(
            id=int(values["id"], 16),
            timestamp_us=int(values["ts"]),
            usage=usage,
            model=values["model"],
            provider=values["provider"],
            cost_units=None if values["cost"] is None else int(values["cost"]),
            price_rule=rule,
            unpriced_reason=values["unpriced_reason"],
            duration_ms=values["duration"],
            attribution=intern_attribution(
                values["agent"],
                values["session"],
                values["user"],
                values["tool"],
                tuple(json.loads(values["tags"])),
                tuple(json.loads(values["path"])),
            ),
            provider_cost=None if values["provider_cost"] is None else Decimal(values["provider_cost"]),
            context=None if values["context"] is None else json.loads(values["context"]),
            estimated_input_tokens=values["est_input"],
            ttft_ms=values["ttft"],
        )

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}{' durable' if self.durable else ''}>"


# -- SQL ----------------------------------------------------------------------------------------------

_INSERT_RECORD = (
    f"INSERT OR IGNORE INTO records ({', '.join(_q(c) for c in _RECORD_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_RECORD_COLUMNS))})"
)
_ROLLUP_COLUMNS = ("cell", "hour", *_KEY_COLUMNS, *_ROLLUP_SUMS, *_TOKEN_COLUMNS)
_UPSERT_ROLLUP = (
    f"INSERT INTO rollup_hour ({', '.join(_q(c) for c in _ROLLUP_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_ROLLUP_COLUMNS))}) ON CONFLICT (cell) DO UPDATE SET "
    + ", ".join(
        f"{_q(c)} = bigadd({_q(c)}, excluded.{_q(c)})"
        if c in ("cost", "provider_cost", "cost_on_provider")
        else f"{_q(c)} = {_q(c)} + excluded.{_q(c)}"
        for c in (*_ROLLUP_SUMS, *_TOKEN_COLUMNS)
    )
)
_ROLLUP_SELECT = ", ".join(
    [
        "sum(calls)",
        "bigsum(cost)",
        "total(duration)",
        "sum(timed)",
        "sum(timed_output)",
        "bigsum(provider_cost)",
        "sum(provider_calls)",
        "bigsum(cost_on_provider)",
        *(f"sum({_q(c)})" for c in _TOKEN_COLUMNS),
    ]
)
_RECORDS_SELECT = ", ".join(
    [
        "count(*)",
        "bigsum(cost)",
        "total(duration)",
        "count(duration)",
        "coalesce(sum(CASE WHEN duration IS NOT NULL THEN t_output_tokens END), 0)",
        "bigsum(pc_units)",
        "count(pc_units)",
        "bigsum(CASE WHEN pc_units IS NOT NULL THEN cost END)",
        *(f"sum({_q(c)})" for c in _TOKEN_COLUMNS),
    ]
)
_AT = {name: i for i, name in enumerate(_RECORD_COLUMNS)}


def _rollup_deltas(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rollup rows (one per hour × key) summing raw record rows, ready for `_UPSERT_ROLLUP`."""
    cells: dict[tuple[Any, ...], list[Any]] = {}
    key_at = [_AT[c] for c in _KEY_COLUMNS]
    token_at = [_AT[c] for c in _TOKEN_COLUMNS]
    for row in rows:
        key = (row[_AT["hour"]], *(row[i] for i in key_at))
        sums = cells.get(key)
        if sums is None:
            sums = cells[key] = [0, 0, 0.0, 0, 0, 0, 0, 0, *([0] * len(token_at))]
        cost = int(row[_AT["cost"]]) if row[_AT["cost"]] is not None else 0
        sums[0] += 1
        sums[1] += cost
        duration = row[_AT["duration"]]
        if duration is not None:
            sums[2] += duration
            sums[3] += 1
            sums[4] += row[_AT["t_output_tokens"]]
        reported = row[_AT["pc_units"]]
        if reported is not None:
            sums[5] += int(reported)
            sums[6] += 1
            sums[7] += cost
        for j, i in enumerate(token_at):
            sums[8 + j] += row[i]
    deltas = []
    for key, sums in cells.items():
        sums[1], sums[5], sums[7] = str(sums[1]), str(sums[5]), str(sums[7])
        deltas.append((json.dumps(key), *key, *sums))
    return deltas


def _where(query: Query, raw: bool = False) -> tuple[str, list[Any], Callable[[str, str], bool] | None]:
    """SQL conditions (exact, parameterized) for the plain filters, and a Python check for
    path and tag filters (None when there are none). `raw` adds the time range."""
    conditions: list[str] = []
    params: list[Any] = []
    tag_options: list[object] | None = None
    for name, wanted in query.filters:
        options = _options(wanted)
        if name == "tag":
            tag_options = list(options)
            continue
        if name == "priced":
            values: list[Any] = [int(bool(v)) for v in options if isinstance(v, (bool, int))]
            values = [v for v in values if v in (0, 1)]
        elif name in _PLAIN_FILTERS:
            values = [v.value if isinstance(v, UsageStatus) else v for v in options]
            values = [v for v in values if v is None or isinstance(v, str)]
        else:  # Query.build already refused unknown filters
            raise ValueError(f"unknown filter {name!r}")
        parts = []
        strings = [v for v in values if v is not None]
        if strings:
            parts.append(f"{_q(name)} IN ({', '.join('?' * len(strings))})")
            params.extend(strings)
        if None in values:
            parts.append(f"{_q(name)} IS NULL")
        conditions.append("(" + " OR ".join(parts) + ")" if parts else "0")
    if raw:
        if query.since_us is not None:
            conditions.append("ts >= ?")
            params.append(query.since_us)
        if query.until_us is not None:
            conditions.append("ts < ?")
            params.append(query.until_us)
    node = query.path
    if node or not query.include_children:
        exact = json.dumps(list(node))
        if query.include_children:
            conditions.append("(path = ? OR substr(path, 1, ?) = ?)")
            opening = exact[:-1] + ","
            params.extend([exact, len(opening), opening])
        else:
            conditions.append("path = ?")
            params.append(exact)
    check: Callable[[str, str], bool] | None = None
    if tag_options is not None:
        wanted_tags = tag_options

        def check(path: str, tags: str) -> bool:
            have = json.loads(tags)
            return any(tag in have for tag in wanted_tags)

    return " AND ".join(conditions), params, check


def _estimate_column(estimate: object) -> int | None:
    """The estimate as SQLite can hold it (NULL when missing or not a 64-bit token count)."""
    if type(estimate) is int and 0 <= estimate < 2**63:
        return estimate
    return None


def _options(wanted: object) -> list[object]:
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return list(wanted)
    return [wanted]


def _vector(sums: Sequence[Any]) -> list[int | float]:
    vector: list[int | float] = [0] * VECTOR_SIZE
    vector[CALLS] = int(sums[0] or 0)
    vector[COST] = int(sums[1] or 0)
    vector[DURATION] = float(sums[2] or 0.0)
    vector[TIMED] = int(sums[3] or 0)
    vector[TIMED_OUTPUT] = int(sums[4] or 0)
    vector[PROVIDER_COST] = int(sums[5] or 0)
    vector[PROVIDER_CALLS] = int(sums[6] or 0)
    vector[COST_ON_PROVIDER_CALLS] = int(sums[7] or 0)
    for i in range(len(TOKEN_FIELDS)):
        vector[TOKENS + i] = int(sums[8 + i] or 0)
    return vector


def _groups(row: Sequence[Any], index: dict[str, int], by: tuple[str, ...]) -> list[tuple[GroupValue, ...]]:
    groups: list[tuple[GroupValue, ...]] = [()]
    for name in by:
        values: Iterable[GroupValue]
        if name == "tag":
            values = tuple(json.loads(row[index["tags"]])) or (None,)
        elif name == "path":
            values = ("/".join(json.loads(row[index["path"]])),)
        elif name in TIME_KEYS:
            values = (time_bucket(name, int(row[index["hour"]])),)
        else:
            values = (row[index[name]],)
        groups = [(*group, value) for group in groups for value in values]
    return groups


def _sortable(value: GroupValue) -> tuple[bool, str]:
    if value is None:
        return (True, "")
    return (False, value.isoformat() if isinstance(value, date) else value)


def _retry(work: Callable[[], _T], patience: float = 30.0) -> _T:
    """Run `work`, retrying while another process holds the database lock past busy_timeout,
    for about `patience` seconds in all."""
    delay = 0.005
    deadline = time.monotonic() + patience
    while True:
        try:
            return work()
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _describe(exc: sqlite3.Error) -> str:
    text = str(exc)
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered:
        return f"{text} (the file is corrupted or not a SQLite database)"
    if "locked" in lowered or "busy" in lowered:
        return f"{text} (another process holds the database lock)"
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return f"{text} (check that the file and its directory are writable)"
    return text


def _close_ref(ref: weakref.ReferenceType[SQLiteStore]) -> None:
    store = ref()
    if store is not None and os.getpid() == store._pid:
        with contextlib.suppress(Exception):
            store.close()
