"""The Postgres store: one ledger shared by many processes on many machines (psycopg 3, `tokentrail[postgres]`).

- `append` queues the record; a background writer commits the queue in batches (when it reaches
  `batch_size`, every `flush_interval` seconds, on `flush()`/`close()` and at exit). A batch is `COPY`'d
  into a temporary staging table, then one statement inserts the rows not in the ledger yet
  (`INSERT … ON CONFLICT DO NOTHING RETURNING …`) and adds exactly those to the hourly rollup, in one
  transaction: a retried or replayed batch never counts a record twice. With `durable=True` the record is
  committed (or, during an outage, fsync'd to the spool) before `append` returns.
- When the server cannot be reached, batches go to a local spool file (see `_spool`) and are replayed in
  order once it answers again; `append` never raises for an outage. A batch the server refuses outright
  (not an outage) is logged and kept in a `.rejected` file beside the spool, never silently dropped.
- Raw rows live in `records`, range-partitioned by month on `ts` (microseconds since the epoch); the
  writer creates a month's partition when it first needs it. `prune` drops whole months as partitions.
- `rollup_hour` (hour × agent × session × user × tool × model × provider × tags × path × status × priced)
  answers summaries for whole hours; raw rows answer only the hours `since`/`until` cut through.
- Money is exact: costs are NUMERIC(60, 0) of 10**-24 USD. Tags and paths are `text[]`.
- Price versions (schema v2): `reprice` writes a record's cost in a version to `costs` only where it
  differs from the recorded one, and the change of the hourly sums to `rollup_prices` (keyed by the
  record's cell and the version's priced flag); the recorded cost is never touched. A summary for a
  version adds those changes to `rollup_hour`; raw reads join `costs`.
- Postgres text cannot hold NUL (nor lone surrogates). A string with either, or one that starts with
  U+FDD0, is stored as U+FDD0 followed by the string with `\\` → `\\\\`, NUL → `\\0`, a surrogate →
  `\\uXXXX`; every other string is stored as it is. Reads undo it, so values round-trip verbatim, and
  filters encode their values the same way.
- The schema (default `tokentrail`, `?schema=` in the URL) is versioned in `schema_migrations` and
  migrated on open under an advisory lock; a newer, unknown version is refused with `StoreError`.

URL: `postgresql://user@host:5432/db?schema=tokentrail&durable=1&batch_size=2000&flush_interval=0.5
&pool_size=4&spool=/var/spool/tokentrail`; other query parameters go to libpq (`sslmode`, …).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import operator
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tokentrail._record import GroupValue, Record, SummaryRow, intern_attribution
from tokentrail._types import TOKEN_FIELDS, PriceRule, Usage, UsageStatus
from tokentrail.errors import StoreError
from tokentrail.stores._session_rows import (
    SESSION_COLUMNS,
    SessionQuery,
    SessionRow,
    matches,
    rebuilt_row,
    table_row,
    table_values,
)
from tokentrail.stores._spool import Spool, default_spool_dir
from tokentrail.stores._writer import BackgroundWriter
from tokentrail.stores.base import (
    CALLS,
    COUNTS_FIRST,
    COUNTS_WITH_UNITS,
    GROUP_KEYS,
    HOUR_US,
    TIME_KEYS,
    Aggregate,
    NonTokenParts,
    PriceFunction,
    Query,
    check_version_label,
    filter_options,
    provider_cost_units,
    sortable,
    sums_vector,
    time_bucket,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["SCHEMA_VERSION", "PostgresStore", "open_postgres_url"]

SCHEMA_VERSION = (
    6  # Postgres' own sequence; v1 holds the columns of the SQLite ledger's v3, v2 adds price versions,
    # v3 the counts a Usage carries beside tokens (as the SQLite ledger's v7), v4 the per-session rollup
    # (as the SQLite ledger's v8), v5 the non-token part of each cost (as the SQLite ledger's v9), v6 each
    # session's (as the SQLite ledger's v10)
)
_T = TypeVar("_T")
_log = logging.getLogger("tokentrail")

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_MAX_PENDING = 1_000_000
_RETRIES = 5  # deadlocks and serialization failures before a batch counts as undeliverable now
_SHARED_CACHE_LIMIT = 4096
# A row of `ledger_meta` (v5 on) saying the non-token parts of the costs stored before v5 are not filled yet.
_UNFILLED = "non_token_unfilled"
_OPTIONS = ("schema", "durable", "batch_size", "flush_interval", "pool_size", "spool", "timeout")

# The counts each schema version stores, frozen (stores.base): a migration means what it meant when released.
_TOKEN_FIELDS_V1 = COUNTS_FIRST
_TOKEN_FIELDS_V3 = COUNTS_WITH_UNITS
# The current schema stores every count of a Usage (tests check TOKEN_FIELDS == _TOKEN_FIELDS_V3: a new
# Usage count needs a new migration).
_TOKEN_COLUMNS = tuple(f"t_{name}" for name in TOKEN_FIELDS)
_KEY_COLUMNS = ("agent", "session", "user", "tool", "model", "provider", "tags", "path", "status", "priced")
_PLAIN_FILTERS = ("agent", "session", "user", "tool", "model", "provider", "status")
_RECORD_COLUMNS = (
    "cell",
    "id",
    "ts",
    "hour",
    *_KEY_COLUMNS,
    "usage_reason",
    "unpriced_reason",
    "rule",
    "cost",
    "duration",
    "provider_cost",
    "pc_units",
    "context",
    *_TOKEN_COLUMNS,
    "est_input",
    "ttft",
    "non_token",
)
_AT = {name: i for i, name in enumerate(_RECORD_COLUMNS)}
# A row spooled before v3 lacks the counts v3 added (they sit just before est_input and ttft).
_V3_ZEROS = (0,) * (len(_TOKEN_FIELDS_V3) - len(_TOKEN_FIELDS_V1))
_V3_COUNTS_AT = _AT[f"t_{_TOKEN_FIELDS_V3[len(_TOKEN_FIELDS_V1)]}"]
_V4_ROW_WIDTH = len(_RECORD_COLUMNS) - 1  # a row spooled before v5 lacks the non-token part (last)
_V2_ROW_WIDTH = _V4_ROW_WIDTH - len(_V3_ZEROS)
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
_token_counts = operator.attrgetter(*TOKEN_FIELDS)


def _q(name: str) -> str:
    return f'"{name}"'


# -- text that Postgres can hold -------------------------------------------------------------------------

_MARK = "\ufdd0"  # a Unicode noncharacter: no real name starts with it
_UNSAFE = re.compile(r"[\\\x00\ud800-\udfff]")
_ESCAPED = re.compile(r"\\(\\|0|u[0-9a-f]{4})")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    if char == "\x00":
        return "\\0"
    return f"\\u{ord(char):04x}"


def _unescape_char(match: re.Match[str]) -> str:
    code = match.group(1)
    if code == "\\":
        return "\\"
    if code == "0":
        return "\x00"
    return chr(int(code[1:], 16))


def encode_text(value: str | None) -> str | None:
    """`value` as Postgres text can hold it (see the module docstring); most strings are unchanged."""
    if value is None:
        return None
    if "\x00" not in value and not value.startswith(_MARK) and (value.isascii() or _encodable(value)):
        return value
    return _MARK + _UNSAFE.sub(_escape_char, value)


def decode_text(value: str | None) -> str | None:
    """The string `encode_text` was given."""
    if value is None or not value.startswith(_MARK):
        return value
    return _ESCAPED.sub(_unescape_char, value[1:])


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- schema ------------------------------------------------------------------------------------------------


def _tokens_bigint(token_fields: tuple[str, ...]) -> str:
    return ", ".join(f"{_q('t_' + name)} BIGINT NOT NULL DEFAULT 0" for name in token_fields)


def _schema_v1(s: str) -> list[str]:
    tokens = _tokens_bigint(_TOKEN_FIELDS_V1)
    keys = (
        'agent TEXT, session TEXT, "user" TEXT, tool TEXT, model TEXT, provider TEXT,'
        " tags TEXT[] NOT NULL, path TEXT[] NOT NULL, status TEXT NOT NULL, priced BOOLEAN NOT NULL"
    )
    return [
        f"CREATE TABLE {s}.records ("
        " cell UUID NOT NULL, id UUID NOT NULL, ts BIGINT NOT NULL, hour BIGINT NOT NULL,"
        f" {keys}, usage_reason TEXT, unpriced_reason TEXT, rule UUID,"
        " cost NUMERIC(60, 0), duration DOUBLE PRECISION, provider_cost NUMERIC, pc_units NUMERIC(60, 0),"
        f" context TEXT, {tokens}, est_input BIGINT, ttft DOUBLE PRECISION,"
        " PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)",
        f"CREATE INDEX records_ts ON {s}.records (ts)",
        f"CREATE TABLE {s}.rollup_hour ("
        f" cell UUID PRIMARY KEY, hour BIGINT NOT NULL, {keys},"
        " calls BIGINT NOT NULL, cost NUMERIC(60, 0) NOT NULL, duration DOUBLE PRECISION NOT NULL,"
        " timed BIGINT NOT NULL, timed_output BIGINT NOT NULL, provider_cost NUMERIC(60, 0) NOT NULL,"
        f" provider_calls BIGINT NOT NULL, cost_on_provider NUMERIC(60, 0) NOT NULL, {tokens})",
        f"CREATE INDEX rollup_hour_hour ON {s}.rollup_hour (hour)",
        f"CREATE TABLE {s}.rules (id UUID PRIMARY KEY, text TEXT NOT NULL)",
    ]


def _schema_v2(s: str) -> list[str]:
    """v2: price versions made by `reprice` — a record's cost per version in `costs` (only where it
    differs from the recorded one), each version's change of the hourly sums in `rollup_prices` (keyed by
    the record's rollup cell and the version's priced flag) — and a partial index of the records that
    carry a pre-call input estimate (`Query` filter `estimated`)."""
    tokens = _tokens_bigint(_TOKEN_FIELDS_V1)
    keys = (
        'agent TEXT, session TEXT, "user" TEXT, tool TEXT, model TEXT, provider TEXT,'
        " tags TEXT[] NOT NULL, path TEXT[] NOT NULL, status TEXT NOT NULL, priced BOOLEAN NOT NULL"
    )
    return [
        f"CREATE TABLE {s}.price_versions (version TEXT PRIMARY KEY,"
        " seq BIGINT GENERATED ALWAYS AS IDENTITY, created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        f"CREATE TABLE {s}.costs ("
        " version TEXT NOT NULL, id UUID NOT NULL, ts BIGINT NOT NULL, priced BOOLEAN NOT NULL,"
        " cost NUMERIC(60, 0), rule UUID, unpriced_reason TEXT, PRIMARY KEY (version, id))",
        f"CREATE INDEX costs_id ON {s}.costs (id)",
        f"CREATE INDEX costs_ts ON {s}.costs (ts)",
        f"CREATE TABLE {s}.rollup_prices ("
        f" version TEXT NOT NULL, cell UUID NOT NULL, hour BIGINT NOT NULL, {keys},"
        " calls BIGINT NOT NULL, cost NUMERIC(60, 0) NOT NULL, duration DOUBLE PRECISION NOT NULL,"
        " timed BIGINT NOT NULL, timed_output BIGINT NOT NULL, provider_cost NUMERIC(60, 0) NOT NULL,"
        f" provider_calls BIGINT NOT NULL, cost_on_provider NUMERIC(60, 0) NOT NULL, {tokens},"
        " PRIMARY KEY (version, cell, priced))",
        f"CREATE INDEX rollup_prices_cell ON {s}.rollup_prices (cell)",
        f"CREATE INDEX rollup_prices_hour ON {s}.rollup_prices (version, hour)",
        f"CREATE INDEX records_estimated ON {s}.records (ts) WHERE est_input IS NOT NULL",
    ]


def _schema_v3(s: str) -> list[str]:
    """v3: the counts a Usage carries beside tokens (cached video and citation tokens, characters, text
    messages, audio durations in ms, document pages, pixels, file/social/rerank searches, code
    executions), a column each in records (the partitioned parent: its partitions follow), rollup_hour
    and rollup_prices; existing rows read 0 (a constant default: no table is rewritten)."""
    added = ", ".join(
        f"ADD COLUMN {_q('t_' + name)} BIGINT NOT NULL DEFAULT 0"
        for name in _TOKEN_FIELDS_V3[len(_TOKEN_FIELDS_V1) :]
    )
    return [f"ALTER TABLE {s}.{table} {added}" for table in ("records", "rollup_hour", "rollup_prices")]


def _schema_v4(s: str) -> list[str]:
    """v4: a per-session rollup (`sessions`: first and last call, calls, unpriced calls, exact cost of the
    priced ones, input and output tokens, summed call time, agents) with an index on the last call, and an
    index of the records by session and time (one session's rows without a scan). The rows are built at
    v6, once the rollups hold every sum they carry (`_fill_sessions`)."""
    return [
        f"CREATE TABLE {s}.sessions ("
        " session TEXT PRIMARY KEY, first_ts BIGINT NOT NULL, last_ts BIGINT NOT NULL,"
        " calls BIGINT NOT NULL, unpriced BIGINT NOT NULL, cost NUMERIC(60, 0) NOT NULL,"
        " input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, duration DOUBLE PRECISION NOT NULL,"
        " agents TEXT[] NOT NULL)",
        f"CREATE INDEX sessions_last ON {s}.sessions (last_ts)",
        f"CREATE INDEX records_session ON {s}.records (session, ts)",
    ]


def _schema_v5(s: str) -> list[str]:
    """v5: the part of each cost paid for units that are not tokens (requests, searches, durations, pages,
    …; `Record.non_token_units`): a column in records, costs (a price version's), rollup_hour and
    rollup_prices, 0 for existing rows (a constant default: no table is rewritten); a ledger with costs
    stored before is marked for the tracker to fill their amounts (`_mark_non_token_unfilled`)."""
    added = "ADD COLUMN non_token NUMERIC(60, 0) NOT NULL DEFAULT 0"
    return [
        f"ALTER TABLE {s}.{table} {added}" for table in ("records", "costs", "rollup_hour", "rollup_prices")
    ]


def _schema_v6(s: str) -> list[str]:
    """v6: each session's non-token part (`sessions.non_token`), filled after these statements
    (`_fill_sessions`); `ledger_meta` in every ledger (a v5 one filled its parts when it migrated and had
    none)."""
    return [
        f"ALTER TABLE {s}.sessions ADD COLUMN non_token NUMERIC(60, 0) NOT NULL DEFAULT 0",
        _meta_table(s),
    ]


# version → statements that bring a schema at version-1 to it
_MIGRATIONS: dict[int, Callable[[str], list[str]]] = {
    1: _schema_v1,
    2: _schema_v2,
    3: _schema_v3,
    4: _schema_v4,
    5: _schema_v5,
    6: _schema_v6,
}


# -- opening -----------------------------------------------------------------------------------------------


def open_postgres_url(url: str, **options: Any) -> PostgresStore:
    """`postgresql://…?schema=…&durable=1&batch_size=…&flush_interval=…&pool_size=…&spool=DIR` → a store."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreError(f"bad Postgres store URL {url!r}: {exc}") from exc
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreError(f"bad Postgres store URL {url!r}; expected postgresql://user@host:port/database")
    passed = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _OPTIONS:
            passed.append((name, value))
            continue
        try:
            if name in ("schema", "spool"):
                options[name] = value
            elif name == "durable":
                options[name] = value.lower() in ("1", "true", "yes", "on")
            elif name in ("batch_size", "pool_size"):
                options[name] = int(value)
            else:
                options[name] = float(value)
        except ValueError as exc:
            raise StoreError(f"bad value {value!r} for {name} in store URL {url!r}") from exc
    conninfo = urlunsplit(parts._replace(query=urlencode(passed)))
    return PostgresStore(conninfo, **options)


def _import_psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401  (checked here, used when the pool opens)
    except ImportError as exc:
        raise StoreError(
            "the Postgres store needs psycopg 3 and psycopg-pool: pip install 'tokentrail[postgres]'"
        ) from exc
    return psycopg


class PostgresStore(BackgroundWriter):
    """Records in a Postgres schema; same `Store` protocol and semantics as `SQLiteStore`."""

    def __init__(
        self,
        conninfo: str,
        schema: str = "tokentrail",
        durable: bool = False,
        batch_size: int = 2000,
        flush_interval: float = 0.5,
        pool_size: int = 4,
        spool: str | os.PathLike[str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        driver = _import_psycopg()
        if not _SCHEMA_NAME.fullmatch(schema):
            raise StoreError(f"bad Postgres schema name {schema!r} (letters, digits, _; at most 63)")
        self.schema = schema
        self.durable = durable
        self.batch_size = max(1, int(batch_size))
        self.flush_interval = float(flush_interval)
        self.timeout = float(timeout)
        self._s = _q(schema)
        self._kwargs: dict[str, Any] = {"autocommit": True}
        try:
            given = driver.conninfo.conninfo_to_dict(conninfo)
        except driver.Error as exc:
            raise StoreError(f"bad Postgres store URL: {exc}") from exc
        if "connect_timeout" not in given:
            self._kwargs["connect_timeout"] = max(1, round(self.timeout))
        self._conninfo = conninfo
        where = f"{given.get('host', '')}:{given.get('port', '')}/{given.get('dbname', '')}/{schema}"
        self.name = f"postgresql://{where}"
        self._pending: list[Record] = []
        self._pending_lock = threading.Lock()
        self._wake = threading.Condition(self._pending_lock)
        self._write_lock = threading.RLock()
        self._closed = False
        self._pid = os.getpid()
        self._shared: dict[tuple[object, ...], tuple[object, tuple[Any, ...]]] = {}
        self._rule_ids: dict[int, tuple[PriceRule, str, str]] = {}  # id(rule) → (rule, uuid, json)
        self._stored_rules: set[str] = set()  # rule uuids known to be in the ledger
        self._rules: dict[str, PriceRule | None] = {}  # rule uuid → rule, for reads
        self._partitions: set[int] = set()  # month numbers (year * 12 + month - 1) with a partition
        self._writer_conn: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0  # after an outage, when the writer tries the server again
        self._backoff = 0.0
        self.rejected = 0  # records the server refused outright (kept in the .rejected file)
        ledger = hashlib.sha256(self.name.encode()).hexdigest()[:16]
        self._spool = Spool(spool if spool is not None else default_spool_dir(), ledger)
        self._non_token_unfilled = False  # set on opening: costs from before v5 wait for their parts
        self._migrate()
        self._pool = self._open_pool(max(1, int(pool_size)))
        self._start_writer("tokentrail-postgres", background=not durable)
        if self._spool.orphans():
            with contextlib.suppress(Exception):
                self.flush()

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        conn: psycopg.Connection[Any] = psycopg.connect(self._conninfo, **self._kwargs)
        return conn

    def _migrate(self) -> None:
        import psycopg

        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise StoreError(f"cannot reach Postgres store {self.name}: {_first_line(exc)}") from exc
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tokentrail-store:{self.schema}",)
                )
                tables = {
                    row[0]
                    for row in conn.execute(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                        (self.schema,),
                    )
                }
                version = 0
                if "schema_migrations" in tables:
                    row = conn.execute(f"SELECT max(version) FROM {self._s}.schema_migrations").fetchone()
                    version = int(row[0] or 0) if row else 0
                elif "records" in tables or "rollup_hour" in tables:
                    raise StoreError(
                        f"schema {self.schema!r} of {self.name} has a records table but is not a tokentrail "
                        "ledger (no schema_migrations); choose another ?schema="
                    )
                else:
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._s}")
                    conn.execute(
                        f"CREATE TABLE {self._s}.schema_migrations (version INTEGER PRIMARY KEY,"
                        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                    )
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"Postgres store {self.name} has schema version {version}, newer than this "
                        f"tokentrail understands ({SCHEMA_VERSION}); upgrade tokentrail"
                    )
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[target](self._s):
                        conn.execute(statement)
                    if target == 5:
                        _mark_non_token_unfilled(conn, self._s)
                    if target == 6:
                        _fill_sessions(conn, self._s)
                    conn.execute(f"INSERT INTO {self._s}.schema_migrations (version) VALUES (%s)", (target,))
                self._non_token_unfilled = _marked_unfilled(conn, self._s)
            self._load_partitions(conn)
        except psycopg.Error as exc:
            raise StoreError(f"cannot use Postgres store {self.name}: {_first_line(exc)}") from exc
        finally:
            conn.close()

    def _open_pool(self, size: int) -> ConnectionPool[Any]:
        from psycopg_pool import ConnectionPool, PoolTimeout

        pool: ConnectionPool[Any] = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=size,
            kwargs=self._kwargs,
            open=False,
            timeout=self.timeout,
            check=ConnectionPool.check_connection,
            name=f"tokentrail-{self.schema}",
        )
        try:
            pool.open(wait=True, timeout=self.timeout)
        except PoolTimeout as exc:
            pool.close()
            raise StoreError(f"cannot reach Postgres store {self.name}: {exc}") from exc
        return pool

    # -- writing ---------------------------------------------------------------------------------------

    def append(self, record: Record) -> None:
        """Queue `record` (commit it, or spool it during an outage, before returning when durable)."""
        if self._closed:
            raise StoreError(f"Postgres store {self.name} is closed")
        if self._pid != os.getpid():
            raise StoreError("a PostgresStore cannot be shared across fork(); open one per process")
        if self.durable:
            with self._write_lock:
                self._deliver(self._payload([record]))
            return
        with self._pending_lock:
            self._pending.append(record)
            if len(self._pending) == self.batch_size:
                self._wake.notify()

    def flush(self) -> None:
        """Commit every queued record now (to the spool if the server cannot be reached), and replay
        the spool when the server answers."""
        with self._write_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
            try:
                payload = self._payload(batch) if batch else None
                self._deliver(payload, force=True)
            except BaseException:
                with self._pending_lock:  # keep them for the next attempt (bounded)
                    self._pending[:0] = batch[-_MAX_PENDING:]
                    del self._pending[_MAX_PENDING:]
                raise

    def append_new(self, records: list[Record]) -> list[Record]:
        """Commit `records` now, in one transaction, and return those whose id the ledger did not hold
        (the others were written before, by this process or another one: `ON CONFLICT DO NOTHING` skipped
        them, waiting for a concurrent writer of the same id to commit first): what a caller charging each
        record once (budgets, metrics) passes on. Unlike `append`, nothing is spooled: when the server
        cannot take them this raises `StoreError`, and the caller sends them again later."""
        import psycopg

        if self._closed:
            raise StoreError(f"Postgres store {self.name} is closed")
        if self._pid != os.getpid():
            raise StoreError("a PostgresStore cannot be shared across fork(); open one per process")
        if not records:
            return []
        fresh: set[int] = set()
        with self._write_lock:
            payload = self._payload(records)
            attempts = 0
            while True:
                attempts += 1
                fresh.clear()
                try:
                    self._commit(self._writer_connection(), payload, fresh)
                    break
                except psycopg.errors.TransactionRollback as exc:  # deadlock, serialization failure
                    if attempts >= _RETRIES:
                        raise StoreError(
                            f"cannot write to Postgres store {self.name}: {_first_line(exc)}"
                        ) from exc
                    time.sleep(0.01 * attempts)
                except psycopg.Error as exc:
                    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                        self._drop_writer_connection()
                    else:
                        self._partitions.clear()
                    raise StoreError(
                        f"cannot write to Postgres store {self.name}: {_first_line(exc)}"
                    ) from exc
        out = []
        for record in records:
            if record.id in fresh:
                fresh.discard(record.id)  # a record given twice is new once
                out.append(record)
        return out

    _JOIN_SECONDS = 10.0
    _WRITE_FAILED = "tokentrail: Postgres store could neither write nor spool a batch"

    def _write_queued(self) -> None:
        """Deliver the queued records (also when none are: the spool is replayed once the server answers);
        only a failing spool disk raises, and the records stay queued."""
        with self._write_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
            try:
                payload = self._payload(batch) if batch else None
                self._deliver(payload)
            except Exception:
                with self._pending_lock:
                    self._pending[:0] = batch[-_MAX_PENDING:]
                    del self._pending[_MAX_PENDING:]
                raise

    def _release(self) -> None:
        with self._write_lock:
            if self._writer_conn is not None:
                with contextlib.suppress(Exception):
                    self._writer_conn.close()
                self._writer_conn = None
            self._spool.close()
        with contextlib.suppress(Exception):
            self._pool.close(timeout=2)

    def _deliver(self, payload: dict[str, Any] | None, force: bool = False) -> None:
        """Write `payload` (None: nothing new) after the spooled batches; spool it when the server is
        unreachable. Caller holds the write lock. `force` tries the server even inside the back-off."""
        backlog = self._spool.pending or (payload is None and bool(self._spool.orphans()))
        if not force and time.monotonic() < self._retry_at:
            if payload is not None:
                self._spool.append(payload)
            return
        try:
            if backlog:
                self._spool.replay(self._write_payload)
            if payload is not None:
                self._write_payload(payload)
        except _Outage as outage:
            if payload is not None:
                self._spool.append(payload)
            self._backoff = min(max(self._backoff * 2, 0.25), 10.0)
            self._retry_at = time.monotonic() + self._backoff
            _log.warning(
                "tokentrail: Postgres store %s unreachable (%s); batches go to the spool %s",
                self.name,
                outage,
                self._spool.directory,
            )
            return
        self._backoff = 0.0
        self._retry_at = 0.0

    def _write_payload(self, payload: dict[str, Any]) -> None:
        """Commit one batch; raise `_Outage` when the server cannot take it now. A batch the server
        refuses outright is kept in the rejected file (and counted) instead."""
        import psycopg

        attempts = 0
        while True:
            attempts += 1
            try:
                conn = self._writer_connection()
                self._commit(conn, payload)
                return
            except psycopg.errors.TransactionRollback as exc:  # deadlock, serialization failure
                if attempts >= _RETRIES:
                    raise _Outage(_first_line(exc)) from exc
                time.sleep(0.01 * attempts)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._drop_writer_connection()
                raise _Outage(_first_line(exc)) from exc
            except psycopg.Error as exc:
                self._partitions.clear()  # a partition dropped behind our back: look again once
                if attempts < 2:
                    continue
                self._reject(payload, exc)
                return

    def _reject(self, payload: dict[str, Any], exc: Exception) -> None:
        rows = payload.get("rows", [])
        self.rejected += len(rows)
        target = self._spool.directory / f"{self._spool.ledger}.rejected.jsonl"
        _log.error(
            "tokentrail: Postgres store %s refused a batch of %d record(s): %s; kept in %s",
            self.name,
            len(rows),
            _first_line(exc),
            target,
        )
        self._spool.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        try:
            os.write(fd, json.dumps({"error": _first_line(exc), **payload}).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def _writer_connection(self) -> psycopg.Connection[Any]:
        conn = self._writer_conn
        if conn is None or conn.closed or conn.broken:
            conn = self._writer_conn = self._connect()
        return conn

    def _drop_writer_connection(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _commit(
        self, conn: psycopg.Connection[Any], payload: dict[str, Any], fresh: set[int] | None = None
    ) -> None:
        """Write one batch in one transaction; the ids of the records it inserted are added to `fresh`."""
        rows: list[list[Any]] = payload["rows"]
        if rows and len(rows[0]) == _V2_ROW_WIDTH:  # spooled by a store from before schema v3
            rows = [[*row[:_V3_COUNTS_AT], *_V3_ZEROS, *row[_V3_COUNTS_AT:]] for row in rows]
        if rows and len(rows[0]) == _V4_ROW_WIDTH:  # spooled before v5: the part is not known (0)
            rows = [[*row, 0] for row in rows]
        rules: dict[str, str] = payload.get("rules") or {}
        self._ensure_partitions(conn, {_month(row[_AT["ts"]]) for row in rows})
        with conn.transaction():
            fresh_rules = [(key, text) for key, text in rules.items() if key not in self._stored_rules]
            if fresh_rules:
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {self._s}.rules (id, text) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        fresh_rules,
                    )
            conn.execute(_STAGE_TABLE.format(s=self._s))
            with conn.cursor() as cur, cur.copy(_COPY_STAGE) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute(_INSERT_FRESH.format(s=self._s))
            if fresh is not None:
                fresh.update(row[0].int for row in conn.execute(_INSERTED_HERE.format(s=self._s)))
        self._stored_rules.update(key for key, _ in fresh_rules)

    def _ensure_partitions(self, conn: psycopg.Connection[Any], months: set[int]) -> None:
        """Create the monthly partitions of `records` these months need (once, whoever gets there first)."""
        missing = sorted(months - self._partitions)
        if not missing:
            return
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tokentrail-partitions:{self.schema}",)
            )
            self._load_partitions(conn)
            for month in missing:
                if month in self._partitions:
                    continue
                low, high = _month_start_us(month), _month_start_us(month + 1)
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._s}.{_q(_partition_name(month))} "
                    f"PARTITION OF {self._s}.records FOR VALUES FROM ({low}) TO ({high})"
                )
        self._partitions.update(missing)

    def _load_partitions(self, conn: psycopg.Connection[Any]) -> None:
        found = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace"
            " WHERE n.nspname = %s AND p.relname = 'records'",
            (self.schema,),
        ).fetchall()
        for (name,) in found:
            month = _partition_month(name)
            if month is not None:
                self._partitions.add(month)

    # -- records → rows -----------------------------------------------------------------------------------

    def _payload(self, batch: list[Record]) -> dict[str, Any]:
        """The rows of a batch (each id once) and the price rules they name, as JSON-ready data."""
        rows: dict[int, list[Any]] = {}
        rules: dict[str, str] = {}
        cells: dict[tuple[int, int], str] = {}
        alive = []  # the shared tuples whose ids key `cells`
        for record in batch:
            if record.id in rows:
                continue
            shared, rule = self._shared_columns(record, rules)
            hour = record.timestamp_us // HOUR_US
            cell = cells.get((id(shared), hour))
            if cell is None:
                cell = cells[(id(shared), hour)] = _cell(hour, shared)
                alive.append(shared)
            rows[record.id] = _row(record, cell, hour, shared, rule)
        return {"rows": list(rows.values()), "rules": rules}

    def _shared_columns(self, record: Record, rules: dict[str, str]) -> tuple[tuple[Any, ...], str | None]:
        """The key columns many records share (encoded, cached) and the uuid of the record's price rule."""
        usage = record.usage
        attribution = record.attribution
        rule = record.price_rule
        fast = (
            id(attribution),
            record.model,
            record.provider,
            id(usage.status),
            usage.reason,
            record.cost_units is None,
            record.unpriced_reason,
        )
        found = self._shared.get(fast)
        if found is not None and found[0] is attribution:
            columns = found[1]
        else:
            columns = (
                encode_text(attribution.agent),
                encode_text(attribution.session),
                encode_text(attribution.user),
                encode_text(attribution.tool),
                encode_text(record.model),
                encode_text(record.provider),
                [encode_text(tag) for tag in attribution.tags],
                [encode_text(node) for node in attribution.path],
                usage.status.value,
                record.cost_units is not None,
                encode_text(usage.reason),
                encode_text(record.unpriced_reason),
            )
            if len(self._shared) >= _SHARED_CACHE_LIMIT:
                self._shared.clear()
            self._shared[fast] = (attribution, columns)
        return columns, self._rule_id(rule, rules)

    def _rule_id(self, rule: PriceRule | None, rules: dict[str, str]) -> str | None:
        if rule is None:
            return None
        known = self._rule_ids.get(id(rule))
        if known is None or known[0] is not rule:
            text = json.dumps(rule.as_dict(), sort_keys=True, default=str)  # ASCII: safe for Postgres text
            key = str(uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16]))
            if len(self._rule_ids) >= _SHARED_CACHE_LIMIT:
                self._rule_ids.clear()
            known = self._rule_ids[id(rule)] = (rule, key, text)
        if known[1] not in self._stored_rules:
            rules[known[1]] = known[2]
        return known[1]

    # -- reading ---------------------------------------------------------------------------------------

    def _read(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        import psycopg
        from psycopg_pool import PoolTimeout

        self.flush()
        try:
            try:
                with self._pool.connection() as conn:
                    return work(conn)
            except PoolTimeout:
                # The pool may still be backing off after an outage: one direct attempt answers as
                # soon as the server does.
                with self._connect() as conn:
                    return work(conn)
        except (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreError(f"cannot read Postgres store {self.name}: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"Postgres store {self.name} failed: {_first_line(exc)}") from exc

    def summary(self, query: Query, by: tuple[str, ...]) -> list[SummaryRow]:
        """One row per group of `by` over the records `query` selects (rollups for whole hours)."""
        unknown = [name for name in by if name not in GROUP_KEYS]
        if unknown:
            raise ValueError(f"cannot group by {', '.join(unknown)}; known: {', '.join(GROUP_KEYS)}")
        version = query.prices
        where, params = _where(query)
        columns: list[str] = ["priced", "status"]
        for name in by:
            column = {"tag": "tags", "hour": "hour", "day": "hour", "month": "hour"}.get(name, name)
            if column not in columns:
                columns.append(column)
        group_sql = ", ".join(_q(c) for c in columns)
        since, until = query.since_us, query.until_us
        low = None if since is None else -(-since // HOUR_US)  # first whole hour
        high = None if until is None else until // HOUR_US  # first hour not whole
        parts: list[tuple[str, list[str], list[Any]]] = []
        rollup_conditions, rollup_params = list(where), list(params)
        if low is not None:
            rollup_conditions.append("hour >= %s")
            rollup_params.append(low)
        if high is not None:
            rollup_conditions.append("hour < %s")
            rollup_params.append(high)
        if low is None or high is None or low < high:
            parts.append(("rollup_hour", rollup_conditions, rollup_params))
            if version is not None:  # the version's change to the rollup, next to the rollup itself
                parts.append(
                    (
                        "rollup_prices",
                        ["version = %s", *rollup_conditions],
                        [encode_text(version), *rollup_params],
                    )
                )
        for first, last in _cut_ranges(since, until, low, high):
            parts.append(("records", [*where, "ts >= %s", "ts < %s"], [*params, first, last]))
        source, source_params = self._records_source(version)

        def work(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            self._check_version(conn, version)
            found: list[tuple[Any, ...]] = []
            for table, conditions, values in parts:
                sums = _RECORDS_SELECT if table == "records" else _ROLLUP_SELECT
                sql = f"SELECT {group_sql}, {sums} FROM {self._s}.{table}"
                if table == "records":
                    sql = f"SELECT {group_sql}, {sums} FROM {source}"
                    values = [*source_params, *values]
                if conditions:
                    sql += " WHERE " + " AND ".join(conditions)
                found.extend(conn.execute(f"{sql} GROUP BY {group_sql}", values).fetchall())
            return found

        found = self._read(work)
        width = len(columns)
        index = {name: i for i, name in enumerate(columns)}
        groups: dict[tuple[GroupValue, ...], Aggregate] = {}
        for row in found:
            vector = sums_vector(row[width:])
            for group in _groups(row, index, by):
                aggregate = groups.get(group)
                if aggregate is None:
                    aggregate = groups[group] = Aggregate()
                aggregate.add(vector, bool(row[0]), row[1])
        rows = [
            aggregate.row(dict(zip(by, group, strict=True)))
            for group, aggregate in groups.items()
            if version is None or aggregate.vector[CALLS]  # a group a price version moved every call out of
        ]
        if any(name in TIME_KEYS for name in by):
            rows.sort(key=lambda r: [sortable(value) for value in r.group.values()])
        else:
            rows.sort(key=lambda r: (-r.cost_units, -r.calls, [sortable(v) for v in r.group.values()]))
        return rows

    def history(self, query: Query, limit: int | None = None) -> list[Record]:
        """The records `query` selects, oldest first; with `limit`, only the last `limit` of them."""
        if limit is not None and limit <= 0:
            return []
        where, params = _where(query, raw=True)
        source, source_params = self._records_source(query.prices)
        params = [*source_params, *params]
        sql = f"SELECT {', '.join(_q(c) for c in _RECORD_COLUMNS)} FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit is not None:
            sql += f" ORDER BY ts DESC, id DESC LIMIT {int(limit)}"
        else:
            sql += " ORDER BY ts, id"

        def work(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            self._check_version(conn, query.prices)
            found = conn.execute(sql, params).fetchall()
            self._load_rules(conn, found)
            return found

        rows = self._read(work)
        if limit is not None:
            rows.reverse()
        return [self._record(row) for row in rows]

    def reset(self, query: Query) -> int:
        """Forget the records `query` selects, pruned ones included; returns how many were removed.

        Rollup cells of whole hours in the range go as a whole; in the hours `since`/`until` cut through,
        the raw rows' share is subtracted from them. Price versions forget the removed records too."""
        where, params = _where(replace(query, prices=None))
        since, until = query.since_us, query.until_us
        low = None if since is None else -(-since // HOUR_US)
        high = None if until is None else until // HOUR_US
        s = self._s

        def work(conn: psycopg.Connection[Any]) -> int:
            removed = 0
            with conn.transaction():
                self._lock_versions(conn)
                # the sessions with a call in the hours the query reaches: their rows are rebuilt after
                touching = list(where)
                touching_params = list(params)
                if since is not None:
                    touching.append("hour >= %s")
                    touching_params.append(since // HOUR_US)
                if until is not None:
                    touching.append("hour < %s")
                    touching_params.append(-(-until // HOUR_US))
                touched = [
                    row[0]
                    for row in conn.execute(
                        f"SELECT DISTINCT session FROM {s}.rollup_hour{_where_sql(touching)}", touching_params
                    )
                    if row[0] is not None
                ]
                if low is None or high is None or low < high:
                    whole, whole_params = list(where), list(params)
                    raw, raw_params = list(where), list(params)
                    if low is not None:
                        whole.append("hour >= %s")
                        whole_params.append(low)
                        raw.append("ts >= %s")
                        raw_params.append(low * HOUR_US)
                    if high is not None:
                        whole.append("hour < %s")
                        whole_params.append(high)
                        raw.append("ts < %s")
                        raw_params.append(high * HOUR_US)
                    row = conn.execute(
                        f"WITH gone AS (DELETE FROM {s}.rollup_hour{_where_sql(whole)} RETURNING cell, calls),"
                        f" versions AS (DELETE FROM {s}.rollup_prices p USING gone g WHERE p.cell = g.cell)"
                        " SELECT coalesce(sum(calls), 0) FROM gone",
                        whole_params,
                    ).fetchone()
                    removed += int(row[0]) if row else 0
                    conn.execute(_DELETE_RAW.format(s=s, where=_where_sql(raw)), raw_params)
                for first, last in _cut_ranges(since, until, low, high):
                    row = conn.execute(
                        _SUBTRACT_DELETED_VERSIONED.format(
                            s=s, where=_where_sql([*where, "ts >= %s", "ts < %s"])
                        ),
                        [*params, first, last],
                    ).fetchone()
                    removed += int(row[0]) if row else 0
                conn.execute(f"DELETE FROM {s}.rollup_hour WHERE calls = 0")
                _rebuild_sessions(conn, s, touched)
            return removed

        return self._read(work)

    # -- retention -------------------------------------------------------------------------------------

    def prune(self, before_us: int) -> int:
        """Delete the raw rows of every UTC hour ending at or before `before_us`; the rollups keep counting
        them, `history` no longer lists them. Months wholly before the cut go as whole partitions.
        Returns how many rows were deleted.

        A record replayed after its hour was pruned is not recognized as a duplicate."""
        cut = before_us // HOUR_US * HOUR_US
        s = self._s

        def work(conn: psycopg.Connection[Any]) -> int:
            dropped = 0
            with conn.transaction():
                self._lock_versions(conn)
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tokentrail-partitions:{self.schema}",)
                )
                conn.execute(f"DELETE FROM {s}.costs WHERE ts < %s", (cut,))
                self._load_partitions(conn)
                for month in sorted(self._partitions):
                    if _month_start_us(month + 1) <= cut:
                        name = f"{s}.{_q(_partition_name(month))}"
                        row = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
                        dropped += int(row[0]) if row else 0
                        conn.execute(f"DROP TABLE {name}")
                        self._partitions.discard(month)
                result = conn.execute(f"DELETE FROM {s}.records WHERE ts < %s", (cut,))
                dropped += max(result.rowcount, 0)
            return dropped

        return self._read(work)

    def raw_count(self, before_us: int) -> int:
        """How many raw rows `prune(before_us)` would delete."""
        cut = before_us // HOUR_US * HOUR_US

        def work(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(f"SELECT count(*) FROM {self._s}.records WHERE ts < %s", (cut,)).fetchone()
            return int(row[0]) if row else 0

        return self._read(work)

    # -- price versions --------------------------------------------------------------------------------

    def non_token_unfilled(self) -> bool:
        """Whether the ledger, migrated from before v5 with costs in it, waits for `fill_non_token`."""
        return self._non_token_unfilled

    def fill_non_token(self, parts: NonTokenParts) -> int:
        """Fill the non-token part of every cost stored before v5 that `parts` can recompute exactly (see
        `_fill_parts`), in one transaction that also clears the ledger's mark; returns how many costs
        gained a part (0 when another process filled them first). Resets, prunes and reprices wait for
        it; appends go on."""
        s = self._s

        def work(conn: psycopg.Connection[Any]) -> int:
            def records_of(rows: list[Any]) -> list[Record]:
                self._load_rules(conn, rows)
                return [self._record(row) for row in rows]

            with conn.transaction():
                self._lock_versions(conn)  # a second fill waits here, then finds no mark
                if not _marked_unfilled(conn, s):
                    return 0
                filled = _fill_parts(conn, s, parts, records_of)
                conn.execute(f"DELETE FROM {s}.ledger_meta WHERE name = %s", (_UNFILLED,))
            return filled

        filled = self._read(work)
        self._non_token_unfilled = False
        return filled

    def reprice(self, query: Query, price_fn: PriceFunction, version_label: str) -> int:
        """Price the records `query` selects again with `price_fn` into version `version_label`, in one
        transaction; returns how many the version costs differently from their recorded cost.

        Records are read through a server-side cursor `_REPRICE_BATCH` at a time; each batch's new costs
        are `COPY`'d to a staging table and applied by set-based statements (the version's cost rows, the
        change of its rollup cells). Only records whose cost in the version changes are staged, so running
        the same reprice again writes nothing. Recorded costs are never touched; writers keep appending
        meanwhile (records committed after the reprice started keep their recorded cost in the version).
        Resets, prunes and other reprices of this ledger wait for it."""
        import psycopg

        label = check_version_label(version_label)
        version = encode_text(label)
        where, params = _where(replace(query, prices=None), raw=True)
        s = self._s
        columns = ", ".join(f"r.{_q(c)}" for c in _RECORD_COLUMNS)
        select = (
            f"SELECT * FROM (SELECT {columns}, c.id IS NOT NULL AS v_had, c.priced AS v_priced,"
            f" c.cost AS v_cost, c.non_token AS v_nt FROM {s}.records r"
            f" LEFT JOIN {s}.costs c ON c.version = %s AND c.id = r.id)"
            f" AS records{_where_sql(where)}"
        )
        width = len(_RECORD_COLUMNS)
        move_at = [_AT[c] for c in (*_MOVE_KEYS, "pc_units", *_TOKEN_COLUMNS, "id", "ts")]
        stored: dict[str, str] = {}  # price rules this reprice adds to the ledger

        def stage(rows: list[tuple[Any, ...]]) -> tuple[int, list[list[Any]], dict[str, str]]:
            """(records costed differently from their recorded cost, staged moves, new rules)."""
            differing = 0
            moves: list[list[Any]] = []
            rules: dict[str, str] = {}
            for found in rows:
                record = self._record(found[:width])
                had, old_priced, old_cost, old_nt = found[width : width + 4]
                old = (None if old_cost is None else int(old_cost)) if had else record.cost_units
                old_part = int(old_nt or 0) if had else record.non_token_units
                cost = price_fn(record)
                new = cost.total_units if cost.priced else None
                new_part = cost.non_token_units if cost.priced else 0
                kept = (new, new_part) != (record.cost_units, record.non_token_units)
                differing += kept
                if (new, new_part) == (old, old_part):
                    continue
                moves.append(
                    [
                        *(found[i] for i in move_at),
                        bool(old_priced) if had else record.cost_units is not None,
                        old,
                        new is not None,
                        new,
                        self._rule_id(cost.rule, rules) if kept else None,
                        encode_text(cost.reason) if kept and new is None else None,
                        kept,
                        old_part,
                        new_part,
                    ]
                )
            return differing, moves, rules

        def work(conn: psycopg.Connection[Any]) -> int:
            changed = 0
            with conn.transaction():
                self._lock_versions(conn)
                conn.execute(_REPRICE_STAGE)
                conn.execute("TRUNCATE pg_temp.tt_reprice_v5")
                with conn.cursor(name=f"tt_reprice_{uuid.uuid4().hex}") as cursor:
                    cursor.execute(select, [version, *params])
                    while rows := cursor.fetchmany(_REPRICE_BATCH):
                        self._load_rules(conn, rows)
                        differing, moves, rules = stage(rows)
                        changed += differing
                        if not moves:
                            continue
                        fresh = [(key, text) for key, text in rules.items() if key not in stored]
                        if fresh:
                            with conn.cursor() as cur:
                                cur.executemany(
                                    f"INSERT INTO {s}.rules (id, text) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                    fresh,
                                )
                            stored.update(fresh)
                        with conn.cursor() as cur, cur.copy(_COPY_REPRICE) as copy:
                            for move in moves:
                                copy.write_row(move)
                        conn.execute(_UPSERT_MOVES.format(s=s, moves=_STAGED_MOVES), (version,))
                        conn.execute(_DROP_STAGED_COSTS.format(s=s), (version,))
                        conn.execute(_UPSERT_STAGED_COSTS.format(s=s), (version,))
                        conn.execute("TRUNCATE pg_temp.tt_reprice_v5")
                conn.execute(_DROP_EMPTY_PRICES.format(s=s), (version,))
                conn.execute(
                    f"INSERT INTO {s}.price_versions (version) VALUES (%s) ON CONFLICT DO NOTHING", (version,)
                )
            self._stored_rules.update(stored)  # committed: no need to send them again
            # fresh statistics, so reads of the version look costs up by key instead of hashing them all
            with contextlib.suppress(psycopg.Error):
                conn.execute(f"ANALYZE {s}.costs, {s}.rollup_prices")
            return changed

        return self._read(work)

    def price_versions(self) -> list[str]:
        """The price versions made by `reprice`, oldest first."""

        def work(conn: psycopg.Connection[Any]) -> list[str]:
            found = conn.execute(f"SELECT version FROM {self._s}.price_versions ORDER BY seq").fetchall()
            return [decode_text(row[0]) or "" for row in found]

        return self._read(work)

    def _check_version(self, conn: psycopg.Connection[Any], version: str | None) -> None:
        if version is None:
            return
        known = [
            decode_text(row[0]) or ""
            for row in conn.execute(f"SELECT version FROM {self._s}.price_versions ORDER BY seq").fetchall()
        ]
        if version not in known:
            raise ValueError(
                f"no price version {version!r} in this store (known: {', '.join(known) or 'none yet'})"
            )

    def _records_source(self, version: str | None) -> tuple[str, list[Any]]:
        """The table expression raw reads use: records as recorded, or as price `version` costs them."""
        if version is None:
            return f"{self._s}.records", []
        return _VERSIONED_SOURCE.format(s=self._s), [encode_text(version)]

    def _lock_versions(self, conn: psycopg.Connection[Any]) -> None:
        """Serialize, for the current transaction, the work that changes price versions' costs (reprice,
        reset, prune) on this ledger; appends do not take it."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tokentrail-prices:{self.schema}",))

    def stats(self) -> dict[str, int]:
        """Records, unpriced records, rollup rows, partitions, bytes on the server, spool counters."""
        s = self._s

        def work(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
            row = conn.execute(
                f"SELECT (SELECT count(*) FROM {s}.records),"
                f" (SELECT count(*) FROM {s}.records WHERE NOT priced),"
                f" (SELECT count(*) FROM {s}.rollup_hour),"
                " (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                "  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r')",
                (self.schema,),
            ).fetchone()
            return tuple(row) if row else (0, 0, 0, 0)

        records, unpriced, cells, size = self._read(work)
        return {
            "records": int(records),
            "unpriced": int(unpriced),
            "rollup_rows": int(cells),
            "partitions": len(self._partitions),
            "server_bytes": int(size),
            "spooled_batches": self._spool.spooled,
            "replayed_batches": self._spool.replayed,
            "rejected_records": self.rejected,
        }

    def sessions(self, asked: SessionQuery) -> tuple[int, list[SessionRow]]:
        """One page of the per-session rollup and how many sessions match in all (`SessionQuery`; the
        search is matched here, on the decoded text)."""
        s = self._s
        conditions, params = _session_window(asked.since_us, asked.until_us, s)
        direction = "DESC" if asked.descending else "ASC"
        keys = [f"{key} {direction}" for key in _SESSION_ORDER[asked.sort]]
        if asked.sort != "session":
            keys.append('session COLLATE "C" ASC')
        columns = ", ".join(SESSION_COLUMNS)
        search = asked.search

        def work(conn: psycopg.Connection[Any]) -> tuple[int, list[tuple[Any, ...]]]:
            where, values = list(conditions), list(params)
            if search:
                found = conn.execute(
                    f"SELECT session, agents FROM {s}.sessions x{_where_sql(where)}", values
                ).fetchall()
                chosen = [
                    name
                    for name, agents in found
                    if matches(decode_text(name) or "", [decode_text(a) or "" for a in agents], search)
                ]
                where, values = ["session = ANY(%s::text[])"], [chosen]
                total = len(chosen)
            else:
                row = conn.execute(
                    f"SELECT count(*) FROM {s}.sessions x{_where_sql(where)}", values
                ).fetchone()
                total = int(row[0]) if row else 0
            rows = conn.execute(
                f"SELECT {columns} FROM {s}.sessions x{_where_sql(where)} ORDER BY {', '.join(keys)}"
                " LIMIT %s OFFSET %s",
                [*values, int(asked.limit), int(asked.offset)],
            ).fetchall()
            return total, rows

        total, rows = self._read(work)
        return total, [
            table_row((decode_text(row[0]) or "", *row[1:]), (decode_text(a) or "" for a in row[-1]))
            for row in rows
        ]

    def drop_schema(self) -> None:
        """Drop the whole schema (every table of the ledger). Meant for tests and teardown scripts."""

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(f"DROP SCHEMA IF EXISTS {self._s} CASCADE")

        self._read(work)
        self._partitions.clear()
        self._stored_rules.clear()

    def _load_rules(self, conn: psycopg.Connection[Any], rows: Iterable[Sequence[Any]]) -> None:
        rule_at = _AT["rule"]
        wanted = {str(row[rule_at]) for row in rows if row[rule_at] is not None} - set(self._rules)
        if not wanted:
            return
        found = conn.execute(
            f"SELECT id, text FROM {self._s}.rules WHERE id = ANY(%s::uuid[])", (sorted(wanted),)
        ).fetchall()
        for key, text in found:
            self._rules[str(key)] = PriceRule.from_dict(json.loads(text))
        for key in wanted:
            self._rules.setdefault(key, None)  # a dangling reference reads as no rule

    def _record(self, row: Sequence[Any]) -> Record:
        values = dict(zip(_RECORD_COLUMNS, row, strict=True))
        counts = {
            name: int(values[column]) for name, column in zip(TOKEN_FIELDS, _TOKEN_COLUMNS, strict=True)
        }
        usage = Usage(
            **counts, status=UsageStatus(values["status"]), reason=decode_text(values["usage_reason"])
        )
        rule = None if values["rule"] is None else self._rules.get(str(values["rule"]))
        cost = values["cost"]
        return Record(
            id=values["id"].int,
            timestamp_us=int(values["ts"]),
            usage=usage,
            model=decode_text(values["model"]),
            provider=decode_text(values["provider"]),
            cost_units=None if cost is None else int(cost),
            price_rule=rule,
            unpriced_reason=decode_text(values["unpriced_reason"]),
            duration_ms=values["duration"],
            attribution=intern_attribution(
                decode_text(values["agent"]),
                decode_text(values["session"]),
                decode_text(values["user"]),
                decode_text(values["tool"]),
                tuple(_decoded(values["tags"])),
                tuple(_decoded(values["path"])),
            ),
            provider_cost=values["provider_cost"],
            context=None if values["context"] is None else json.loads(values["context"]),
            estimated_input_tokens=values["est_input"],
            ttft_ms=values["ttft"],
            non_token_units=int(values["non_token"] or 0),
        )

    def __repr__(self) -> str:
        return f"<PostgresStore {self.name}{' durable' if self.durable else ''}>"


class _Outage(Exception):
    """The server cannot take a batch now (unreachable, shutting down, or deadlocked past retries)."""


# -- rows -------------------------------------------------------------------------------------------------


def _cell(hour: int, shared: tuple[Any, ...]) -> str:
    """The rollup cell of (hour, key columns): a UUID made of a hash, so 10 kB names index fine."""
    text = json.dumps([hour, *shared[: len(_KEY_COLUMNS)]])
    return str(uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16]))


def _row(record: Record, cell: str, hour: int, shared: tuple[Any, ...], rule: str | None) -> list[Any]:
    """A record's row in `_RECORD_COLUMNS` order, made of JSON-ready values (it may go to the spool)."""
    reported = record.provider_cost
    context = record.context
    estimate = record.estimated_input_tokens
    return [
        cell,
        f"{record.id:032x}",
        record.timestamp_us,
        hour,
        *shared[:12],
        rule,
        record.cost_units,
        record.duration_ms,
        None if reported is None else str(reported),
        None if reported is None else provider_cost_units(reported),
        None if context is None else json.dumps(dict(context), sort_keys=True),
        *_token_counts(record.usage),
        estimate if type(estimate) is int and 0 <= estimate < 2**63 else None,
        record.ttft_ms,
        record.non_token_units if record.cost_units is not None else 0,
    ]


def _decoded(values: Iterable[str]) -> list[str]:
    return [value if not value.startswith(_MARK) else decode_text(value) or "" for value in values]


# -- months and partitions --------------------------------------------------------------------------------


def _month(timestamp_us: int) -> int:
    """The month of a timestamp as year * 12 + (month - 1), UTC."""
    at = datetime.fromtimestamp(timestamp_us // 1_000_000, timezone.utc)
    return at.year * 12 + at.month - 1


def _month_start_us(month: int) -> int:
    start = datetime(month // 12, month % 12 + 1, 1, tzinfo=timezone.utc)
    return int(start.timestamp()) * 1_000_000


def _partition_name(month: int) -> str:
    return f"records_{month // 12:04d}_{month % 12 + 1:02d}"


def _partition_month(name: str) -> int | None:
    found = re.fullmatch(r"records_(\d{4})_(\d{2})", name)
    return None if found is None else int(found.group(1)) * 12 + int(found.group(2)) - 1


# -- queries ----------------------------------------------------------------------------------------------


def _where(query: Query, raw: bool = False) -> tuple[list[str], list[Any]]:
    """SQL conditions (parameterized; values encoded like stored text) for the filters and the
    hierarchy node; `raw` adds the time range (records table). Without `raw` (rollups), a filter only raw
    records answer (`estimated`) is refused."""
    conditions: list[str] = []
    params: list[Any] = []
    if not raw:
        query.check_rollup_filters()
    for name, wanted in query.filters:
        options = filter_options(wanted)
        if name == "estimated":  # True is served by the partial index records_estimated
            condition = _estimate_condition(query.estimated)
            if condition is not None:
                conditions.append(condition)
            continue
        if name == "tag":
            tags = [encode_text(v) for v in options if isinstance(v, str)]
            conditions.append("tags && %s::text[]")
            params.append(tags)
            continue
        if name == "priced":
            flags = {bool(v) for v in options if isinstance(v, (bool, int)) and v in (0, 1)}
            conditions.append("priced = ANY(%s::boolean[])")
            params.append(sorted(flags))
            continue
        if name not in _PLAIN_FILTERS:  # Query.build already refused unknown filters
            raise ValueError(f"unknown filter {name!r}")
        values = [v.value if isinstance(v, UsageStatus) else v for v in options]
        strings = [encode_text(v) for v in values if isinstance(v, str)]
        parts = []
        if strings:
            parts.append(f"{_q(name)} = ANY(%s::text[])")
            params.append(strings)
        if None in values:
            parts.append(f"{_q(name)} IS NULL")
        conditions.append("(" + " OR ".join(parts) + ")" if parts else "false")
    if raw:
        if query.since_us is not None:
            conditions.append("ts >= %s")
            params.append(query.since_us)
        if query.until_us is not None:
            conditions.append("ts < %s")
            params.append(query.until_us)
    node = [encode_text(n) for n in query.path]
    if query.include_children:
        if node:
            conditions.append("path[1:%s::int] = %s::text[]")
            params.extend([len(node), node])
    else:
        conditions.append("path = %s::text[]")
        params.append(node)
    return conditions, params


def _estimate_condition(allowed: frozenset[bool] | None) -> str | None:
    """The SQL condition of the `estimated` filter (None: every record passes)."""
    if allowed is None or allowed == {True, False}:
        return None
    if not allowed:
        return "false"
    return "est_input IS NOT NULL" if True in allowed else "est_input IS NULL"


def _where_sql(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _cut_ranges(
    since: int | None, until: int | None, low: int | None, high: int | None
) -> list[tuple[int | None, int | None]]:
    """The raw-row ranges of the hours `since`/`until` cut through: [since, low) and [high, until)."""
    if low is not None and high is not None and low > high:  # inside one hour
        return [(since, until)]
    ranges: list[tuple[int | None, int | None]] = []
    if since is not None and low is not None and since < low * HOUR_US:
        ranges.append((since, low * HOUR_US))
    if until is not None and high is not None and high * HOUR_US < until:
        ranges.append((high * HOUR_US, until))
    return ranges


def _groups(row: Sequence[Any], index: dict[str, int], by: tuple[str, ...]) -> list[tuple[GroupValue, ...]]:
    groups: list[tuple[GroupValue, ...]] = [()]
    for name in by:
        values: Iterable[GroupValue]
        if name == "tag":
            values = tuple(_decoded(row[index["tags"]])) or (None,)
        elif name == "path":
            values = ("/".join(_decoded(row[index["path"]])),)
        elif name in TIME_KEYS:
            values = (time_bucket(name, int(row[index["hour"]])),)
        else:
            values = (decode_text(row[index[name]]),)
        groups = [(*group, value) for group in groups for value in values]
    return groups


def _mark_non_token_unfilled(conn: psycopg.Connection[Any], s: str) -> None:
    """v5, after the statements: a ledger holding priced costs (recorded or a price version's) is marked as
    waiting for their non-token parts (as the SQLite ledger's v9). Only the code that knows prices can
    recompute them; the tracker that opens the ledger does, through `PostgresStore.fill_non_token`."""
    conn.execute(_meta_table(s))
    row = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM {s}.records WHERE cost IS NOT NULL)"
        f" OR EXISTS (SELECT 1 FROM {s}.costs WHERE cost IS NOT NULL)"
    ).fetchone()
    if row and row[0]:
        conn.execute(
            f"INSERT INTO {s}.ledger_meta (name, value) VALUES (%s, '1') ON CONFLICT DO NOTHING", (_UNFILLED,)
        )


def _marked_unfilled(conn: psycopg.Connection[Any], s: str) -> bool:
    """Whether the ledger is marked as waiting for its non-token parts (`ledger_meta` is in every ledger
    from v6 on)."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{s}.ledger_meta",)).fetchone()
    if row is None or row[0] is None:
        return False
    found = conn.execute(f"SELECT 1 FROM {s}.ledger_meta WHERE name = %s", (_UNFILLED,)).fetchone()
    return found is not None


def _meta_table(s: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {s}.ledger_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"


def _fill_parts(
    conn: psycopg.Connection[Any],
    s: str,
    parts: NonTokenParts,
    records_of: Callable[[list[Any]], list[Record]],
) -> int:
    """`PostgresStore.fill_non_token`'s work, inside its transaction; returns how many costs gained a part.

    As the SQLite ledger's: only the priced records of rules `parts.may_have_part`, whose part is still 0,
    are read (a batch at a time); each part found goes to the record, its hourly cell and its session
    (cells, then sessions, each in key order, as writers lock them). A price version's cost whose part is
    still 0 is filled from the version's own rule; the version's priced change of the record's cell moves
    by its part found minus the recorded part found. Pruned records are not there to read: theirs stay 0."""
    rules = {
        str(key): PriceRule.from_dict(json.loads(text))
        for key, text in conn.execute(f"SELECT id, text FROM {s}.rules").fetchall()
    }
    wanted = sorted(key for key, rule in rules.items() if parts.may_have_part(rule))
    columns = ", ".join(f"r.{_q(c)}" for c in _RECORD_COLUMNS)
    found: dict[str, int] = {}  # record id → its part
    cells: dict[str, int] = {}
    sessions: dict[str, int] = {}
    with conn.cursor(name=f"tt_fill_{uuid.uuid4().hex}") as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {s}.records r WHERE r.cost IS NOT NULL AND r.non_token = 0"
            " AND r.rule = ANY(%s::uuid[])",
            (wanted,),
        )
        while rows := cursor.fetchmany(_REPRICE_BATCH):
            updates = []
            for row, record in zip(rows, records_of(rows), strict=True):
                part = parts.part_of(record)
                if not part:
                    continue
                found[str(row[_AT["id"]])] = part
                updates.append((part, row[_AT["id"]], row[_AT["ts"]]))
                cell, session = str(row[_AT["cell"]]), row[_AT["session"]]
                cells[cell] = cells.get(cell, 0) + part
                if session is not None:
                    sessions[session] = sessions.get(session, 0) + part
            with conn.cursor() as cur:
                cur.executemany(f"UPDATE {s}.records SET non_token = %s WHERE id = %s AND ts = %s", updates)
    with conn.cursor() as cur:
        cur.executemany(
            f"UPDATE {s}.rollup_hour SET non_token = non_token + %s WHERE cell = %s",
            [(units, cell) for cell, units in sorted(cells.items())],
        )
        cur.executemany(
            f"UPDATE {s}.sessions SET non_token = non_token + %s WHERE session = %s",
            [(units, session) for session, units in sorted(sessions.items())],
        )
    versions = conn.execute(
        f"SELECT c.version, c.rule, c.cost, c.non_token, {columns} FROM {s}.costs c"
        f" JOIN {s}.records r ON r.id = c.id AND r.ts = c.ts"
        " WHERE c.id = ANY(%s::uuid[]) OR (c.cost IS NOT NULL AND c.non_token = 0 AND c.rule = ANY(%s::uuid[]))",
        (sorted(found), wanted),
    ).fetchall()
    records = records_of([row[4:] for row in versions])
    costs: list[tuple[int, str, Any]] = []
    moves: dict[tuple[str, str], int] = {}
    for (version, rule, cost, kept, *row), record in zip(versions, records, strict=True):
        version_rule = None if rule is None else rules.get(str(rule))
        part = 0
        if cost is not None and not kept and parts.may_have_part(version_rule):
            part = parts.part_of(replace(record, cost_units=int(cost), price_rule=version_rule))
        if part:
            costs.append((part, version, row[_AT["id"]]))
        change = part - found.get(str(row[_AT["id"]]), 0)
        if change:  # both parts count in the version's priced change of the record's cell
            key = (version, str(row[_AT["cell"]]))
            moves[key] = moves.get(key, 0) + change
    with conn.cursor() as cur:
        cur.executemany(f"UPDATE {s}.costs SET non_token = %s WHERE version = %s AND id = %s", costs)
        cur.executemany(
            f"UPDATE {s}.rollup_prices SET non_token = non_token + %s"
            " WHERE version = %s AND cell = %s AND priced",
            [(units, version, cell) for (version, cell), units in sorted(moves.items())],
        )
    return len(found) + len(costs)


def _fill_sessions(conn: psycopg.Connection[Any], s: str) -> None:
    """v6, after the statements (v4's rows are built here too, once the rollups hold every sum a row
    carries): a ledger from before v4, whose `sessions` table is still empty, gets every session's row
    from the hourly rollup and the raw rows; a ledger that has them adds to each its non-token part,
    summed from the hourly rollup (which, like the rows, still counts pruned calls)."""
    if conn.execute(f"SELECT 1 FROM {s}.sessions LIMIT 1").fetchone() is None:
        _rebuild_sessions(conn, s, None)
        return
    conn.execute(
        f"UPDATE {s}.sessions x SET non_token = r.non_token FROM (SELECT session, sum(non_token) AS non_token"
        f" FROM {s}.rollup_hour WHERE session IS NOT NULL GROUP BY session) r"
        " WHERE x.session = r.session AND r.non_token <> 0"
    )


def _rebuild_sessions(conn: psycopg.Connection[Any], s: str, names: list[str] | None) -> None:
    """Rebuild the `sessions` rows of `names` (stored, encoded values; None: every session) from the
    hourly rollup (its sums, which still count pruned records) and the raw rows (first and last call); a
    session the rollup no longer counts loses its row."""
    if names is not None and not names:
        return
    where, values = "session IS NOT NULL", list[Any]()
    if names is not None:
        where, values = "session = ANY(%s::text[])", [names]
    sums = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT session, sum(calls), coalesce(sum(calls) FILTER (WHERE NOT priced), 0), sum(cost),"
            " sum(non_token), sum(t_input_tokens), sum(t_output_tokens), sum(duration), min(hour), max(hour),"
            " coalesce(array_agg(DISTINCT agent) FILTER (WHERE agent IS NOT NULL), '{}'::text[])"
            f" FROM {s}.rollup_hour WHERE {where} GROUP BY session",
            values,
        )
    }
    raw = {
        row[0]: row[1:]
        for row in conn.execute(
            f"SELECT session, count(*), min(ts), max(ts) FROM {s}.records WHERE {where} GROUP BY session",
            values,
        )
    }
    old: dict[str, tuple[int, int]] = {}
    if names is not None:
        old = {
            row[0]: (int(row[1]), int(row[2]))
            for row in conn.execute(
                f"SELECT session, first_ts, last_ts FROM {s}.sessions WHERE {where}", values
            )
        }
        conn.execute(f"DELETE FROM {s}.sessions WHERE {where}", values)
    else:
        conn.execute(f"DELETE FROM {s}.sessions")
    rows = []
    for session, (*totals, agents) in sums.items():
        if totals[0]:
            hour_counts = functools.partial(_hour_counts, conn, s, session)
            rebuilt = rebuilt_row(session, totals, raw.get(session), old.get(session), hour_counts, agents)
            rows.append(table_values(rebuilt))
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {s}.sessions ({', '.join(SESSION_COLUMNS)})"
                f" VALUES ({', '.join(['%s'] * len(SESSION_COLUMNS))})",
                rows,
            )


def _hour_counts(conn: psycopg.Connection[Any], s: str, session: str, hour: int) -> tuple[int, int]:
    """(calls the hourly rollup counts, raw rows left) of one session in one hour."""
    row = conn.execute(
        f"SELECT (SELECT coalesce(sum(calls), 0) FROM {s}.rollup_hour WHERE session = %s AND hour = %s),"
        f" (SELECT count(*) FROM {s}.records WHERE session = %s AND ts >= %s AND ts < %s)",
        (session, hour, session, hour * HOUR_US, (hour + 1) * HOUR_US),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _session_window(since_us: int | None, until_us: int | None, s: str) -> tuple[list[str], list[Any]]:
    """Conditions on `sessions` for "has a call in [since_us, until_us)" (as in the SQLite store: with
    both bounds a session spanning the window is asked whether it has a call inside)."""
    if since_us is None and until_us is None:
        return [], []
    if until_us is None:
        return ["last_ts >= %s"], [since_us]
    if since_us is None:
        return ["first_ts < %s"], [until_us]
    low, high = -(-since_us // HOUR_US), until_us // HOUR_US
    inside = [
        f"EXISTS (SELECT 1 FROM {s}.records r WHERE r.session = x.session AND r.ts >= %s AND r.ts < %s)"
    ]
    values: list[Any] = [since_us, until_us]
    if low < high:
        inside.append(
            f"EXISTS (SELECT 1 FROM {s}.rollup_hour h WHERE h.session = x.session AND h.hour >= %s"
            " AND h.hour < %s AND h.calls > 0)"
        )
        values += [low, high]
    return (
        ["last_ts >= %s", "first_ts < %s", f"(first_ts >= %s OR last_ts < %s OR {' OR '.join(inside)})"],
        [since_us, until_us, since_us, until_us, *values],
    )


# sort key → ORDER BY terms over `sessions` (session ids in code-point order, as Python sorts them)
_SESSION_ORDER = {
    "last": ("last_ts",),
    "first": ("first_ts",),
    "cost": ("cost",),
    "calls": ("calls",),
    "tokens": ("input_tokens + output_tokens",),
    "span": ("last_ts - first_ts",),
    "unpriced": ("unpriced",),
    "session": ('session COLLATE "C"',),
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# -- SQL --------------------------------------------------------------------------------------------------

_STAGE_COLUMNS = ", ".join(_q(c) for c in _RECORD_COLUMNS)
_STAGE_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS tt_stage_v5 (LIKE {s}.records INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_COPY_STAGE = f"COPY pg_temp.tt_stage_v5 ({_STAGE_COLUMNS}) FROM STDIN"
_KEYS = ", ".join(_q(c) for c in _KEY_COLUMNS)
_ROLLUP_COLUMNS = ("cell", "hour", *_KEY_COLUMNS, *_ROLLUP_SUMS, *_TOKEN_COLUMNS, "non_token")
# The per-cell sums of a set of record rows, in `_ROLLUP_SUMS` + token order.
_ROW_SUM_LIST = (
    "count(*)",
    "coalesce(sum(cost), 0)",
    "coalesce(sum(duration), 0)",
    "count(duration)",
    "coalesce(sum(t_output_tokens) FILTER (WHERE duration IS NOT NULL), 0)",
    "coalesce(sum(pc_units), 0)",
    "count(pc_units)",
    "coalesce(sum(cost) FILTER (WHERE pc_units IS NOT NULL), 0)",
    *(f"coalesce(sum({_q(c)}), 0)" for c in _TOKEN_COLUMNS),
    "coalesce(sum(non_token), 0)",
)
_ROW_SUMS = ", ".join(_ROW_SUM_LIST)
_SUM_NAMES = (*_ROLLUP_SUMS, *_TOKEN_COLUMNS, "non_token")
_ADD_SUMS = ", ".join(f"{_q(c)} = rollup_hour.{_q(c)} + excluded.{_q(c)}" for c in _SUM_NAMES)
# Insert the staged rows the ledger does not hold yet and add exactly those to the hourly and the
# per-session rollups. Cells and sessions are upserted in key order, so concurrent writers lock rollup
# rows in the same order (no deadlocks).
_INSERT_FRESH = (
    "WITH fresh AS ("
    f" INSERT INTO {{s}}.records ({_STAGE_COLUMNS}) SELECT {_STAGE_COLUMNS} FROM pg_temp.tt_stage_v5"
    " ON CONFLICT DO NOTHING RETURNING *),"
    f" cells AS (INSERT INTO {{s}}.rollup_hour ({', '.join(_q(c) for c in _ROLLUP_COLUMNS)})"
    f" SELECT cell, hour, {_KEYS}, {_ROW_SUMS} FROM fresh GROUP BY cell, hour, {_KEYS} ORDER BY cell"
    f" ON CONFLICT (cell) DO UPDATE SET {_ADD_SUMS})"
    f" INSERT INTO {{s}}.sessions ({', '.join(SESSION_COLUMNS)})"
    " SELECT session, min(ts), max(ts), count(*), count(*) FILTER (WHERE NOT priced),"
    " coalesce(sum(cost), 0), coalesce(sum(non_token), 0), coalesce(sum(t_input_tokens), 0),"
    " coalesce(sum(t_output_tokens), 0),"
    " coalesce(sum(duration), 0),"
    " coalesce(array_agg(DISTINCT agent ORDER BY agent) FILTER (WHERE agent IS NOT NULL), '{{}}'::text[])"
    " FROM fresh WHERE session IS NOT NULL GROUP BY session ORDER BY session"
    " ON CONFLICT (session) DO UPDATE SET first_ts = least(sessions.first_ts, excluded.first_ts),"
    " last_ts = greatest(sessions.last_ts, excluded.last_ts), calls = sessions.calls + excluded.calls,"
    " unpriced = sessions.unpriced + excluded.unpriced, cost = sessions.cost + excluded.cost,"
    " non_token = sessions.non_token + excluded.non_token,"
    " input_tokens = sessions.input_tokens + excluded.input_tokens,"
    " output_tokens = sessions.output_tokens + excluded.output_tokens,"
    " duration = sessions.duration + excluded.duration,"
    " agents = CASE WHEN excluded.agents <@ sessions.agents THEN sessions.agents"
    " ELSE ARRAY(SELECT DISTINCT a FROM unnest(sessions.agents || excluded.agents) AS a ORDER BY a) END"
)
# The staged records this transaction inserted (`_INSERT_FRESH` skipped those the ledger held, also
# ones a concurrent transaction inserted first): their row version was made by this transaction (PG 13+).
_INSERTED_HERE = (
    "SELECT s.id FROM pg_temp.tt_stage_v5 s JOIN {s}.records r ON r.id = s.id AND r.ts = s.ts"
    " WHERE r.xmin = pg_current_xact_id()::xid"
)
_SUBTRACT_SUMS = ", ".join(f"{_q(c)} = r.{_q(c)} - d.{_q(c)}" for c in _SUM_NAMES)
_NAMED_SUMS = ", ".join(
    f"{expression} AS {_q(name)}" for expression, name in zip(_ROW_SUM_LIST, _SUM_NAMES, strict=True)
)
# Delete raw rows and subtract them from their rollup cells; returns how many rows went.
_SUBTRACT_DELETED = (
    "WITH gone AS (DELETE FROM {s}.records{where} RETURNING *),"
    f" d AS (SELECT cell, {_NAMED_SUMS} FROM gone GROUP BY cell),"
    " changed AS (UPDATE {s}.rollup_hour r SET " + _SUBTRACT_SUMS + " FROM d WHERE r.cell = d.cell)"
    " SELECT count(*) FROM gone"
)
_ROLLUP_SELECT = ", ".join(
    [
        "sum(calls)",
        "sum(cost)",
        "sum(duration)",
        "sum(timed)",
        "sum(timed_output)",
        "sum(provider_cost)",
        "sum(provider_calls)",
        "sum(cost_on_provider)",
        *(f"sum({_q(c)})" for c in _TOKEN_COLUMNS),
        "sum(non_token)",
    ]
)
_RECORDS_SELECT = _ROW_SUMS

# -- price versions ---------------------------------------------------------------------------------------

_VERSIONED = ("priced", "cost", "rule", "unpriced_reason", "non_token")  # what a price version replaces
# The records as price version %s costs them (records it did not reprice keep their recorded cost).
_VERSIONED_SOURCE = (
    "(SELECT "
    + ", ".join(
        f"CASE WHEN c.id IS NULL THEN r.{_q(c)} ELSE c.{_q(c)} END AS {_q(c)}"
        if c in _VERSIONED
        else f"r.{_q(c)}"
        for c in _RECORD_COLUMNS
    )
    + " FROM {s}.records r LEFT JOIN {s}.costs c ON c.version = %s AND c.id = r.id) AS records"
)
# What `reprice` stages per batch: a record's rollup key, reported cost and tokens (as its row holds
# them), its cost in the version so far (old) and its new one, and whether that differs from the
# recorded cost (a cost row is kept) or not (the cost row goes).
_MOVE_KEYS = ("cell", "hour", *_KEY_COLUMNS[:-1])
_REPRICE_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS tt_reprice_v5 ("
    ' cell UUID, hour BIGINT, agent TEXT, session TEXT, "user" TEXT, tool TEXT, model TEXT, provider TEXT,'
    " tags TEXT[], path TEXT[], status TEXT, pc_units NUMERIC(60, 0), "
    + ", ".join(f"{_q(c)} BIGINT" for c in _TOKEN_COLUMNS)
    + ", id UUID, ts BIGINT, old_priced BOOLEAN, old_cost NUMERIC(60, 0), new_priced BOOLEAN,"
    " new_cost NUMERIC(60, 0), rule UUID, unpriced_reason TEXT, kept BOOLEAN, old_nt NUMERIC(60, 0),"
    " new_nt NUMERIC(60, 0)) ON COMMIT DELETE ROWS"
)
_REPRICE_STAGE_COLUMNS = (
    *_MOVE_KEYS,
    "pc_units",
    *_TOKEN_COLUMNS,
    "id",
    "ts",
    "old_priced",
    "old_cost",
    "new_priced",
    "new_cost",
    "rule",
    "unpriced_reason",
    "kept",
    "old_nt",
    "new_nt",
)
_COPY_REPRICE = f"COPY pg_temp.tt_reprice_v5 ({', '.join(_q(c) for c in _REPRICE_STAGE_COLUMNS)}) FROM STDIN"
_PRICES_COLUMNS = ("version", *_ROLLUP_COLUMNS)
_ADD_PRICES = ", ".join(f"{_q(c)} = rollup_prices.{_q(c)} + excluded.{_q(c)}" for c in _SUM_NAMES)
_MOVE_GROUP = ", ".join(["m.version", *(f"m.{_q(c)}" for c in _MOVE_KEYS), "d.priced"])
# The sums of moving each row of `m` from (old_priced, old_cost) to (new_priced, new_cost): the row
# subtracted at the old cost, added at the new (timing sums do not depend on cost). When both are
# priced (or both unpriced) the two land in one cell, and only the cost moves.
_MOVE_SUMS = ", ".join(
    [
        "sum(d.sign)",
        "sum(d.sign * coalesce(d.units, 0))",
        "0",
        "0",
        "0",
        "sum(d.sign * coalesce(m.pc_units, 0))",
        "sum(CASE WHEN m.pc_units IS NULL THEN 0 ELSE d.sign END)",
        "sum(CASE WHEN m.pc_units IS NULL THEN 0 ELSE d.sign * coalesce(d.units, 0) END)",
        *(f"sum(d.sign * m.{_q(c)})" for c in _TOKEN_COLUMNS),
        "sum(CASE WHEN d.priced THEN d.sign * coalesce(d.nt, 0) ELSE 0 END)",
    ]
)
_UPSERT_MOVES = (
    f"INSERT INTO {{s}}.rollup_prices ({', '.join(_q(c) for c in _PRICES_COLUMNS)})"
    f" SELECT {_MOVE_GROUP}, {_MOVE_SUMS} FROM {{moves}} m CROSS JOIN LATERAL"
    " (VALUES (-1, m.old_priced, m.old_cost, m.old_nt), (1, m.new_priced, m.new_cost, m.new_nt))"
    " AS d(sign, priced, units, nt)"
    " WHERE m.old_priced IS DISTINCT FROM m.new_priced OR m.old_cost IS DISTINCT FROM m.new_cost"
    " OR m.old_nt IS DISTINCT FROM m.new_nt"
    f" GROUP BY {_MOVE_GROUP} ORDER BY {_MOVE_GROUP}"
    f" ON CONFLICT (version, cell, priced) DO UPDATE SET {_ADD_PRICES}"
)
_STAGED_MOVES = "(SELECT %s::text AS version, * FROM pg_temp.tt_reprice_v5)"
_DROP_STAGED_COSTS = "DELETE FROM {s}.costs c USING pg_temp.tt_reprice_v5 t WHERE c.version = %s AND c.id = t.id AND NOT t.kept"
_UPSERT_STAGED_COSTS = (
    "INSERT INTO {s}.costs (version, id, ts, priced, cost, rule, unpriced_reason, non_token)"
    " SELECT %s, id, ts, new_priced, new_cost, rule, unpriced_reason, new_nt FROM pg_temp.tt_reprice_v5"
    " WHERE kept ORDER BY id ON CONFLICT (version, id) DO UPDATE SET priced = excluded.priced,"
    " cost = excluded.cost, rule = excluded.rule, unpriced_reason = excluded.unpriced_reason,"
    " non_token = excluded.non_token"
)
# Cells a version's changes cancel out in (every record back at its recorded cost).
_DROP_EMPTY_PRICES = "DELETE FROM {s}.rollup_prices WHERE version = %s AND " + " AND ".join(
    f"{_q(c)} = 0" for c in _SUM_NAMES if c not in ("duration", "timed", "timed_output")
)
# Delete raw rows, subtract them from their rollup cells, undo every price version's change for them
# and drop their version costs; returns how many rows went.
_SUBTRACT_DELETED_VERSIONED = (
    "WITH gone AS (DELETE FROM {s}.records{where} RETURNING *),"
    f" d AS (SELECT cell, {_NAMED_SUMS} FROM gone GROUP BY cell),"
    " changed AS (UPDATE {s}.rollup_hour r SET " + _SUBTRACT_SUMS + " FROM d WHERE r.cell = d.cell),"
    " moves AS (SELECT c.version, "
    + ", ".join(f"g.{_q(c)}" for c in _MOVE_KEYS)
    + ", g.pc_units, "
    + ", ".join(f"g.{_q(c)}" for c in _TOKEN_COLUMNS)
    + ", c.priced AS old_priced, c.cost AS old_cost, g.priced AS new_priced, g.cost AS new_cost,"
    " c.non_token AS old_nt, g.non_token AS new_nt FROM gone g JOIN {s}.costs c ON c.id = g.id),"
    " undone AS ("
    + _UPSERT_MOVES.replace("{moves}", "moves")
    + "), dropped AS (DELETE FROM {s}.costs c USING gone g WHERE c.id = g.id)"
    " SELECT count(*) FROM gone"
)
_DELETE_RAW = (
    "WITH gone AS (DELETE FROM {s}.records{where} RETURNING id)"
    " DELETE FROM {s}.costs c USING gone g WHERE c.id = g.id"
)
_REPRICE_BATCH = 5000
