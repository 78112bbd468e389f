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
- Hourly and daily rollup tables (hour or day × agent × session × user × tool × model × provider ×
  tags × path × status × priced) are maintained in the same transaction as the raw rows (a batch's
  change is summed per cell in Python first); summaries read the daily rollup for whole days, the
  hourly one for the other whole hours, and raw rows only for the hours `since`/`until` cut through.
- The file is created with mode 0600; the schema is versioned (`schema_version`) and migrated on open;
  a newer, unknown version is refused with `StoreError`. No prompt or response text is stored.
- Price versions (schema v4): `reprice` writes a record's new cost to `costs` (keyed by version and record
  id) only when it differs from the recorded one, and the change of each rollup cell's sums to
  `rollup_prices`; the recorded cost is never touched. A summary for a version adds those changes to
  `rollup_hour`, and raw reads join `costs`.
- `prune` deletes raw rows of whole hours and keeps the rollups (hourly, daily, price versions), so
  summaries still count them; `history` no longer lists them.
- A narrow raw row (schema v5): the columns many records share (attribution, model, provider, status,
  priced, reasons, price rule) are one row of `dims`, inserted once and cached in-process, that the
  record's row in `ledger` references by integer id; the id is a 16-byte BLOB, the primary key of a
  WITHOUT ROWID table (so a record is stored once whatever its timestamp), and `ts` the one index;
  the common token kinds have columns and the rest (other token kinds, a provider-reported cost,
  request context, the pre-call estimate) go to one nullable JSON column written only when one of them
  is not the default. The view `records` shows the rows as the wide v4 table did; reads go through it.
- A partial index (schema v6), `ledger_estimated`, of the rows that carry a pre-call estimate, so the
  `estimated=True` filter reads those rows instead of scanning the ledger.
- Writing a batch: a flush commits at most `_RECORDS_A_TRANSACTION` records a transaction, builds their
  columns `_RECORDS_A_CHUNK` at a time, inserts 50 rows a statement with a column that is NULL in every
  row written as the literal NULL and ids bound as bytearrays (the sqlite3 module binds None and `bytes`
  through an adapter lookup, ≈ 0.3 µs a value), and upserts each rollup cell's change once.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import operator
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from itertools import chain, repeat, starmap
from pathlib import Path
from typing import Any, TypeVar

from tokentrail._record import Attribution, GroupValue, Record, SummaryRow, intern_attribution
from tokentrail._types import TOKEN_FIELDS, PriceRule, Usage, UsageStatus
from tokentrail.errors import StoreError
from tokentrail.stores._session_rows import (
    SESSION_COLUMNS,
    SessionQuery,
    SessionRow,
    add_cell,
    matches,
    rebuilt_row,
    table_row,
    table_values,
)
from tokentrail.stores._writer import BackgroundWriter
from tokentrail.stores.base import (
    CALLS,
    COST,
    COST_ON_PROVIDER_CALLS,
    COUNTS_FIRST,
    COUNTS_WITH_UNITS,
    GROUP_KEYS,
    HOUR_US,
    NON_TOKEN,
    PROVIDER_COST,
    TIME_KEYS,
    Aggregate,
    NonTokenParts,
    PriceFunction,
    Query,
    check_version_label,
    filter_options,
    provider_cost_units,
    reprice_vectors,
    sortable,
    sums_vector,
    time_bucket,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "open_sqlite_url"]

SCHEMA_VERSION = 10
_MAX_PENDING = 1_000_000  # queued records kept while the file cannot be written
_T = TypeVar("_T")

# The counts each schema version stores, frozen (stores.base): a migration means what it meant when released.
_TOKEN_FIELDS_V1 = COUNTS_FIRST
_TOKEN_FIELDS_V7 = COUNTS_WITH_UNITS
# The current schema stores every count of a Usage (tests check TOKEN_FIELDS == _TOKEN_FIELDS_V7: a new
# Usage count needs a new migration).
_TOKEN_COLUMNS = tuple(f"t_{name}" for name in TOKEN_FIELDS)
_KEY_COLUMNS = ("agent", "session", "user", "tool", "model", "provider", "tags", "path", "status", "priced")
_PLAIN_FILTERS = {"agent", "session", "user", "tool", "model", "provider", "status"}
# The columns many records share come first: a record's row is one cached tuple of them plus its own values.
_SHARED_COLUMNS = (*_KEY_COLUMNS, "usage_reason", "unpriced_reason", "rule")


def _record_columns(token_fields: tuple[str, ...], non_token: bool = False) -> tuple[str, ...]:
    """The columns of the wide `records` table (v1–v4) and view (v5 on) storing these counts (and, from
    v9, the part of the cost not paid for tokens)."""
    return (
        *_SHARED_COLUMNS,
        "id",
        "ts",
        "hour",
        "cost",
        "duration",
        "provider_cost",
        "pc_units",
        "context",
        *(f"t_{name}" for name in token_fields),
        "est_input",
        "ttft",
        *(("non_token",) if non_token else ()),
    )


_RECORD_COLUMNS = _record_columns(TOKEN_FIELDS, non_token=True)
_SHARED_CACHE_LIMIT = 4096
# v5: the raw row of a record in `ledger`; token kinds most calls report have columns, the rest go to `extra`
_ROW_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def _rare(token_fields: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The counts of `token_fields` kept in `extra` (JSON, when not their default), and their defaults."""
    rare = tuple(name for name in token_fields if name not in _ROW_TOKENS)
    return rare, tuple(1 if name == "requests" else 0 for name in rare)


_RARE_TOKENS, _RARE_DEFAULTS = _rare(TOKEN_FIELDS)
_LEDGER_COLUMNS = ("ts", "id", "dim", "cost", "duration", "ttft", *(f"t_{n}" for n in _ROW_TOKENS), "extra")
_NO_EXTRAS = (None, None, None)
_record_fields = operator.attrgetter(
    "timestamp_us",
    "id",
    "cost_units",
    "duration_ms",
    "ttft_ms",
    "usage",
    "attribution",
    "model",
    "provider",
    "price_rule",
    "unpriced_reason",
    "provider_cost",
    "context",
    "estimated_input_tokens",
    "non_token_units",
)
_usage_fields = operator.attrgetter(*_ROW_TOKENS, *_RARE_TOKENS, "status", "reason")
_id_to_16_bytes = operator.methodcaller("to_bytes", 16, "big")
_ID_LIMIT = 1 << 128
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


def _tokens_int(token_fields: tuple[str, ...]) -> str:
    return ", ".join(f"{_q('t_' + name)} INTEGER NOT NULL DEFAULT 0" for name in token_fields)


def _schema_v1() -> list[str]:
    tokens_int = _tokens_int(_TOKEN_FIELDS_V1)
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


def _schema_v4() -> list[str]:
    """v4: price versions made by `reprice` (a record's cost per version, each version's rollup change);
    a daily rollup (`hour` holds the day's first hour) so long reports read few rows; price rules stored
    once in `rules` (a record's `rule` column holds the id; older rows keep their JSON); the unused index
    on records.hour is dropped (reads go by ts)."""
    tokens_int = _tokens_int(_TOKEN_FIELDS_V1)
    return [
        "CREATE TABLE price_versions (version TEXT PRIMARY KEY, created_us INTEGER NOT NULL)",
        "CREATE TABLE costs ("
        " version TEXT NOT NULL, id TEXT NOT NULL, hour INTEGER NOT NULL, priced INTEGER NOT NULL,"
        " cost TEXT, rule TEXT, unpriced_reason TEXT, PRIMARY KEY (version, id)) WITHOUT ROWID",
        "CREATE INDEX costs_id ON costs (id)",
        "CREATE TABLE rollup_prices ("
        " version TEXT NOT NULL, cell TEXT NOT NULL, hour INTEGER NOT NULL,"
        ' agent TEXT, session TEXT, "user" TEXT, tool TEXT, model TEXT, provider TEXT,'
        " tags TEXT NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL, priced INTEGER NOT NULL,"
        " calls INTEGER NOT NULL, cost TEXT NOT NULL, duration REAL NOT NULL, timed INTEGER NOT NULL,"
        " timed_output INTEGER NOT NULL, provider_cost TEXT NOT NULL, provider_calls INTEGER NOT NULL,"
        f" cost_on_provider TEXT NOT NULL, {tokens_int}, PRIMARY KEY (version, cell))",
        "CREATE TABLE rollup_day ("
        " cell TEXT PRIMARY KEY, hour INTEGER NOT NULL,"
        ' agent TEXT, session TEXT, "user" TEXT, tool TEXT, model TEXT, provider TEXT,'
        " tags TEXT NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL, priced INTEGER NOT NULL,"
        " calls INTEGER NOT NULL, cost TEXT NOT NULL, duration REAL NOT NULL, timed INTEGER NOT NULL,"
        " timed_output INTEGER NOT NULL, provider_cost TEXT NOT NULL, provider_calls INTEGER NOT NULL,"
        f" cost_on_provider TEXT NOT NULL, {tokens_int})",
        "CREATE INDEX rollup_day_hour ON rollup_day (hour)",
        "DROP INDEX IF EXISTS records_hour",
        "CREATE TABLE rules (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE)",
    ]


def _fill_rollup_day(conn: sqlite3.Connection) -> None:
    """v4, after the statements: the daily rollup of what the hourly one holds (the v1 counts)."""
    columns = _rollup_columns(_TOKEN_FIELDS_V1)
    rows = conn.execute(f"SELECT {', '.join(_q(c) for c in columns)} FROM rollup_hour").fetchall()
    conn.executemany(_upsert_rollup("rollup_day", columns), _by_day(rows))


def _schema_v5() -> list[str]:
    """v5: a narrow raw row. `dims` holds each combination of the columns records share once; `ledger`
    holds a record's own values and its `dims` id, keyed by its 16-byte id, the rare values in `extra`
    (JSON). The rows move from `records` after these statements (`_move_to_ledger`)."""
    tokens = ", ".join(f"{_q('t_' + n)} INTEGER NOT NULL" for n in _ROW_TOKENS)
    return [
        "CREATE TABLE dims ("
        " id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
        ' agent TEXT, session TEXT, "user" TEXT, tool TEXT, model TEXT, provider TEXT,'
        " tags TEXT NOT NULL, path TEXT NOT NULL, status TEXT NOT NULL, priced INTEGER NOT NULL,"
        " usage_reason TEXT, unpriced_reason TEXT, rule TEXT)",
        "CREATE TABLE ledger ("
        " ts INTEGER NOT NULL, id BLOB NOT NULL, dim INTEGER NOT NULL, cost TEXT, duration REAL, ttft REAL,"
        f" {tokens}, extra TEXT, PRIMARY KEY (id)) WITHOUT ROWID",
        "CREATE INDEX ledger_ts ON ledger (ts)",
    ]


_ESTIMATED = "json_extract(extra, '$.est_input') IS NOT NULL"  # a `ledger` row with a pre-call estimate


def _schema_v6() -> list[str]:
    """v6: a partial index of the few rows that carry a pre-call estimate, for the `estimated` filter."""
    return [f"CREATE INDEX ledger_estimated ON ledger (ts) WHERE {_ESTIMATED}"]


def _schema_v7() -> list[str]:
    """v7: the counts a Usage carries beside tokens (cached video and citation tokens, characters, text
    messages, audio durations, document pages, pixels, file/social/rerank searches, code executions):
    rollup columns, and the `records` view shows them from `extra` (where a `ledger` row keeps them)."""
    new = _TOKEN_FIELDS_V7[len(_TOKEN_FIELDS_V1) :]
    return [
        *(
            f"ALTER TABLE {table} ADD COLUMN {_q('t_' + name)} INTEGER NOT NULL DEFAULT 0"
            for table in ("rollup_hour", "rollup_day", "rollup_prices")
            for name in new
        ),
        "DROP VIEW records",
        _records_view(_TOKEN_FIELDS_V7),
    ]


def _schema_v8() -> list[str]:
    """v8: a per-session rollup (`sessions`: first and last call, calls, unpriced calls, exact cost of the
    priced ones, input and output tokens, summed call time, agents as a sorted JSON array) with an index
    on the last call, so the session list reads one row per session; and the indexes that find one
    session's raw rows without a scan (`dims` by session, `ledger` by `dims` id and time). The rows are
    built at v10, once the rollups hold every sum they carry (`_fill_sessions`)."""
    return [
        "CREATE TABLE sessions ("
        " session TEXT PRIMARY KEY, first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL,"
        " calls INTEGER NOT NULL, unpriced INTEGER NOT NULL, cost TEXT NOT NULL,"
        " input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, duration REAL NOT NULL,"
        " agents TEXT NOT NULL) WITHOUT ROWID",
        "CREATE INDEX sessions_last ON sessions (last_ts)",
        "CREATE INDEX dims_session ON dims (session)",
        "CREATE INDEX ledger_dim ON ledger (dim, ts)",
    ]


def _schema_v9() -> list[str]:
    """v9: the part of each cost paid for units that are not tokens (requests, searches, durations, pages,
    …; `Record.non_token_units`): a `non_token` sum (exact, decimal text) in every rollup, a price
    version's in `costs`, a `ledger` row's in `extra` (`nt`, only when not 0), shown by the `records`
    view. A ledger with costs stored before is marked for the tracker to fill their amounts
    (`_mark_non_token_unfilled`)."""
    return [
        *(
            f"ALTER TABLE {table} ADD COLUMN non_token TEXT NOT NULL DEFAULT '0'"
            for table in ("rollup_hour", "rollup_day", "rollup_prices")
        ),
        "ALTER TABLE costs ADD COLUMN non_token TEXT",
        "DROP VIEW records",
        _records_view(_TOKEN_FIELDS_V7, non_token=True),
    ]


# A row of `ledger_meta` (v9 on) saying the non-token parts of the costs stored before v9 are not filled yet.
_UNFILLED = "non_token_unfilled"
_META_TABLE = (
    "CREATE TABLE IF NOT EXISTS ledger_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
)


def _mark_non_token_unfilled(conn: sqlite3.Connection) -> None:
    """v9, after the statements: a ledger holding priced costs (recorded or a price version's) is marked
    as waiting for their non-token parts. Only the code that knows prices can recompute them; the tracker
    that opens the ledger does, through `SQLiteStore.fill_non_token`."""
    conn.execute(_META_TABLE)
    priced = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM ledger WHERE cost IS NOT NULL)"
        " OR EXISTS (SELECT 1 FROM costs WHERE cost IS NOT NULL)"
    ).fetchone()[0]
    if priced:
        conn.execute("INSERT OR IGNORE INTO ledger_meta (name, value) VALUES (?, '1')", (_UNFILLED,))


def _marked_unfilled(conn: sqlite3.Connection) -> bool:
    """Whether the ledger is marked as waiting for its non-token parts (`ledger_meta` is in every ledger
    from v10 on)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_meta'").fetchone():
        return conn.execute("SELECT 1 FROM ledger_meta WHERE name = ?", (_UNFILLED,)).fetchone() is not None
    return False


def _fill_parts(
    conn: sqlite3.Connection, parts: NonTokenParts, records_of: Callable[[list[Any]], list[Record]]
) -> int:
    """`SQLiteStore.fill_non_token`'s work, inside its transaction; returns how many costs gained a part.

    Only the rows of `dims` whose rule `parts.may_have_part` are read, and of those the priced rows whose
    part is still 0. Each part found goes to the row (`extra.nt`) and to its hourly and daily cell and its
    session. A price version's cost (`costs`) whose part is still 0 is filled from the version's own rule;
    the version's change of the record's priced cell (`rollup_prices`) moves by its part found minus the
    recorded part found (both count in that cell; an unpriced version cost has none). A record `prune`
    removed is not there to read: its part stays 0, as the rollups count it."""
    rules: dict[str, PriceRule | None] = {}

    def rule_of(text: str | None) -> PriceRule | None:
        if text is None:
            return None
        if text not in rules:
            found: str | None = text
            if not text.startswith("{"):
                row = conn.execute("SELECT text FROM rules WHERE id = ?", (text,)).fetchone()
                found = None if row is None else row[0]
            rules[text] = None if found is None else PriceRule.from_dict(json.loads(found))
        return rules[text]

    select = _records_select(_TOKEN_FIELDS_V7, non_token=True)
    unfilled = " AND l.cost IS NOT NULL AND json_extract(l.extra, '$.nt') IS NULL"
    cells: dict[str, int] = {}  # hourly rollup cell → the parts found in it
    recorded: dict[str, tuple[str, int]] = {}  # record id → (its rollup cell, its part)
    sessions: dict[str, int] = {}
    filled = 0
    for dim, *shared in conn.execute(f"SELECT id, {', '.join(_q(c) for c in _SHARED_COLUMNS)} FROM dims"):
        if not shared[_SHARED_COLUMNS.index("priced")]:
            continue
        if not parts.may_have_part(rule_of(shared[_SHARED_COLUMNS.index("rule")])):
            continue
        rows = conn.execute(f"{select} WHERE l.dim = ?{unfilled}", (dim,)).fetchall()
        for row, record in zip(rows, records_of(rows), strict=True):
            part = parts.part_of(record)
            if not part:
                continue
            filled += 1
            record_id = row[_AT["id"]]
            cell = _priced_cell(row)
            recorded[record_id] = (cell, part)
            cells[cell] = cells.get(cell, 0) + part
            session = row[_AT["session"]]
            if session is not None:
                sessions[session] = sessions.get(session, 0) + part
            conn.execute(
                "UPDATE ledger SET extra = json_set(coalesce(extra, '{}'), '$.nt', ?) WHERE id = ?",
                (str(part), _id_bytes_of_text(record_id)),
            )
    days: dict[str, int] = {}
    for cell, units in cells.items():
        hour, *keys = json.loads(cell)
        day = json.dumps([hour // 24 * 24, *keys])
        days[day] = days.get(day, 0) + units
    for table, key, sums in (
        ("rollup_hour", "cell", cells),
        ("rollup_day", "cell", days),
        ("sessions", "session", sessions),
    ):
        conn.executemany(
            f"UPDATE {table} SET non_token = bigadd(non_token, ?) WHERE {key} = ?",
            [(str(units), name) for name, units in sums.items()],
        )
    moves: dict[tuple[str, str], int] = {}
    for version, record_id, cost, rule_text, kept in conn.execute(
        "SELECT version, id, cost, rule, non_token FROM costs"
    ).fetchall():
        target: str | None  # the record's priced cell (None: neither part found)
        target, recorded_part = recorded.get(record_id, (None, 0))
        part = 0
        rule = rule_of(rule_text)
        if cost is not None and not int(kept or 0) and parts.may_have_part(rule):
            row = conn.execute(f"{select} WHERE l.id = ?", (_id_bytes_of_text(record_id),)).fetchone()
            if row is not None:
                target = _priced_cell(row)
                (record,) = records_of([row])
                part = parts.part_of(replace(record, cost_units=int(cost), price_rule=rule))
        if part:
            filled += 1
            conn.execute(
                "UPDATE costs SET non_token = ? WHERE version = ? AND id = ?", (str(part), version, record_id)
            )
        if target is not None and part != recorded_part:
            moves[(version, target)] = moves.get((version, target), 0) + part - recorded_part
    conn.executemany(
        "UPDATE rollup_prices SET non_token = bigadd(non_token, ?) WHERE version = ? AND cell = ?",
        [(str(units), version, cell) for (version, cell), units in moves.items()],
    )
    return filled


def _priced_cell(row: Sequence[Any]) -> str:
    """The hourly rollup cell of a priced `records` row (a price version's priced change goes there too)."""
    return json.dumps([row[_AT["hour"]], *(row[_AT[c]] for c in _KEY_COLUMNS[:-1]), 1])


def _schema_v10() -> list[str]:
    """v10: each session's non-token part (`sessions.non_token`, exact, decimal text), filled after these
    statements (`_fill_sessions`); `ledger_meta` in every ledger (a v9 one filled its parts when it
    migrated and had none)."""
    return ["ALTER TABLE sessions ADD COLUMN non_token TEXT NOT NULL DEFAULT '0'", _META_TABLE]


def _fill_sessions(conn: sqlite3.Connection) -> None:
    """v10, after the statements (v8's rows are built here too, once the rollups hold every sum a row
    carries): a ledger from before v8, whose `sessions` table is still empty, gets every session's row
    from the hourly rollup and the raw rows; a ledger that has them adds to each its non-token part,
    summed from the hourly rollup (which, like the rows, still counts pruned calls)."""
    if conn.execute("SELECT 1 FROM sessions LIMIT 1").fetchone() is None:
        _rebuild_sessions(conn, None)
        return
    sums = conn.execute(
        "SELECT session, bigsum(non_token) FROM rollup_hour WHERE session IS NOT NULL GROUP BY session"
    ).fetchall()
    conn.executemany(
        "UPDATE sessions SET non_token = ? WHERE session = ?",
        [(units, session) for session, units in sums if units != "0"],
    )


def _records_view(token_fields: tuple[str, ...], non_token: bool = False) -> str:
    """The view that shows `ledger` rows as the wide v4 `records` table did (`_record_columns`), with
    these counts (and, from v9, the non-token part of the cost)."""
    return f"CREATE VIEW records AS {_records_select(token_fields, non_token)}"


def _records_select(token_fields: tuple[str, ...], non_token: bool = False) -> str:
    """The `records` view's query (`ledger l` joined to `dims d`), for a condition on `l` to narrow."""
    shown = {
        "id": "CASE WHEN length(l.id) = 16 THEN lower(hex(l.id)) ELSE CAST(l.id AS TEXT) END",
        "ts": "l.ts",
        "hour": f"CASE WHEN l.ts >= 0 THEN l.ts / {HOUR_US} ELSE (l.ts + 1) / {HOUR_US} - 1 END",
        "cost": "l.cost",
        "duration": "l.duration",
        "ttft": "l.ttft",
        "provider_cost": "json_extract(l.extra, '$.provider_cost')",
        "pc_units": "json_extract(l.extra, '$.pc_units')",
        "context": "json_extract(l.extra, '$.context')",
        "est_input": "json_extract(l.extra, '$.est_input')",
        "non_token": "CASE WHEN l.cost IS NULL THEN NULL ELSE coalesce(json_extract(l.extra, '$.nt'), '0') END",
    }
    for name in _ROW_TOKENS:
        shown[f"t_{name}"] = f"l.{_q('t_' + name)}"
    for name, default in zip(*_rare(token_fields), strict=True):
        shown[f"t_{name}"] = f"coalesce(json_extract(l.extra, '$.{name}'), {default})"
    columns = ", ".join(
        f"{shown.get(c, 'd.' + _q(c))} AS {_q(c)}" for c in _record_columns(token_fields, non_token)
    )
    return f"SELECT {columns} FROM ledger l JOIN dims d ON d.id = l.dim"


def _move_to_ledger(conn: sqlite3.Connection) -> None:
    """v5, after the statements: every v4 `records` row to `dims` + `ledger`, value for value; then the
    table gives way to the view."""
    dims: dict[tuple[Any, ...], int] = {}
    insert = _INSERT_RECORD.replace("INSERT OR IGNORE", "INSERT", 1)
    columns = _record_columns(_TOKEN_FIELDS_V1)
    rows = conn.execute(f"SELECT {', '.join(_q(c) for c in columns)} FROM records ORDER BY ts, id")
    while chunk := rows.fetchmany(10_000):
        conn.executemany(insert, [_ledger_row_of_v4(conn, row, dims) for row in chunk])
    conn.execute("DROP TABLE records")
    conn.execute(_records_view(_TOKEN_FIELDS_V1))


def _ledger_row_of_v4(
    conn: sqlite3.Connection, row: Sequence[Any], dims: dict[tuple[Any, ...], int]
) -> tuple[Any, ...]:
    """The `ledger` row of a v4 `records` row (`_record_columns(_TOKEN_FIELDS_V1)` order), its values kept
    as stored."""
    values = dict(zip(_record_columns(_TOKEN_FIELDS_V1), row, strict=True))
    shared = tuple(row[: len(_SHARED_COLUMNS)])
    dim = dims.get(shared)
    if dim is None:
        dim = dims[shared] = _insert_dim(conn, shared)
    extra: dict[str, Any] = {
        name: values[f"t_{name}"]
        for name, default in zip(*_rare(_TOKEN_FIELDS_V1), strict=True)
        if values[f"t_{name}"] != default
    }
    for name in ("provider_cost", "pc_units", "context", "est_input"):
        if values[name] is not None:
            extra[name] = values[name]
    return (
        values["ts"],
        _id_bytes_of_text(values["id"]),
        dim,
        values["cost"],
        values["duration"],
        values["ttft"],
        *(values[f"t_{name}"] for name in _ROW_TOKENS),
        json.dumps(extra) if extra else None,
    )


def _insert_dim(conn: sqlite3.Connection, shared: tuple[Any, ...]) -> int:
    """The id in `dims` of these shared column values (`_SHARED_COLUMNS` order), inserted if new."""
    key = json.dumps(shared)
    conn.execute(_INSERT_DIM, (key, *shared))
    return int(conn.execute("SELECT id FROM dims WHERE key = ?", (key,)).fetchone()[0])


def _id_bytes(record_id: int) -> bytes:
    """A record id as `ledger` stores it: 16 big-endian bytes (its hex text, as bytes, if out of range)."""
    if 0 <= record_id < _ID_LIMIT:
        return record_id.to_bytes(16, "big")
    return f"{record_id:032x}".encode()


def _id_bytes_of_text(text: str) -> bytes:
    """`_id_bytes` of an id given as the `records` view (and v4) shows it."""
    if len(text) == 32:
        with contextlib.suppress(ValueError):
            return bytes.fromhex(text)
    return text.encode()


# version → statements that bring a database at version-1 to it
_MIGRATIONS: dict[int, Callable[[], list[str]]] = {
    1: _schema_v1,
    2: _schema_v2,
    3: _schema_v3,
    4: _schema_v4,
    5: _schema_v5,
    6: _schema_v6,
    7: _schema_v7,
    8: _schema_v8,
    9: _schema_v9,
    10: _schema_v10,
}
# version → what moves or derives data after its statements
_MIGRATION_STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {
    4: _fill_rollup_day,
    5: _move_to_ledger,
    9: _mark_non_token_unfilled,
    10: _fill_sessions,
}


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


class SQLiteStore(BackgroundWriter):
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
        self._pending: deque[Record] = deque()
        self._forked = False  # set in a child process made by fork(): the store is its parent's
        self._pending_lock = threading.Lock()
        self._db_lock = threading.RLock()
        self._wake = threading.Condition(self._pending_lock)
        self._closed = False
        self._rule_json: dict[int, tuple[PriceRule, str]] = {}
        self._rules: dict[str, PriceRule] = {}  # rule JSON (as a v3 file holds it) → rule
        self._rule_ids: dict[str, str] = {}  # rule JSON → its id in `rules`
        self._by_ref: dict[str, PriceRule | None] = {}  # id in `rules` → rule
        # (ids and values a record's shared columns come from) → (attribution, rule, its `dims` id)
        self._dims: dict[tuple[object, ...], int] = {}
        self._alive: list[tuple[object, object]] = []
        self._dim_ids: dict[tuple[Any, ...], int] = {}  # shared column values → `dims` id
        self._dim_keys: dict[int, tuple[Any, ...]] = {}  # `dims` id → its rollup key columns
        self._cell_texts: dict[tuple[int, int], str] = {}  # (`dims` id, hour) → the rollup cell's key
        self._shared: dict[int, _Shared] = {}  # `dims` id → its row decoded (reads)
        self._timeout = float(timeout)
        self._non_token_unfilled = False  # set on opening: costs from before v9 wait for their parts
        self._conn = self._connect(timeout)
        self._pid = os.getpid()
        _OPEN_STORES.add(self)
        self._start_writer("tokentrail-sqlite", background=not durable)

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
            conn.create_function("tt_agents", 2, _merge_agents, deterministic=True)
            conn.create_function("tt_match", 3, _session_matches, deterministic=True)
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
                    after = _MIGRATION_STEPS.get(target)
                    if after is not None:
                        after(conn)
                    conn.execute("DELETE FROM schema_version")
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
                self._non_token_unfilled = _marked_unfilled(conn)
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
        if self._forked:
            raise StoreError("a SQLiteStore cannot be shared across fork(); open one per process")
        if self.durable:
            with self._db_lock:
                self._write([record])
            return
        pending = self._pending
        pending.append(record)  # a deque: appends need no lock; only `flush` takes from the left
        if len(pending) >= self.batch_size:
            with self._pending_lock:
                self._wake.notify()

    def flush(self) -> None:
        """Commit every queued record now, in transactions of at most `_RECORDS_A_TRANSACTION`."""
        with self._db_lock:
            pending = self._pending
            left = len(pending)  # records queued while this runs wait for the next flush
            while left:
                take = min(left, _RECORDS_A_TRANSACTION)
                left -= take
                batch = list(starmap(pending.popleft, repeat((), take)))
                try:
                    self._write(batch)
                except BaseException:
                    pending.extendleft(reversed(batch[-_MAX_PENDING:]))  # kept for the next attempt (bounded)
                    for _ in range(len(pending) - _MAX_PENDING):
                        pending.pop()
                    raise

    def append_new(self, records: list[Record]) -> list[Record]:
        """Commit `records` now and return those whose id the ledger did not hold (the others were
        written before, by this process or another one): what a caller charging each record once
        (budgets, metrics) passes on. Each transaction holds SQLite's write lock from the check to the
        insert (`BEGIN IMMEDIATE`), so two processes writing the same record are told once. Raises
        `StoreError` when the file cannot be written (nothing is kept queued)."""
        if self._closed:
            raise StoreError(f"SQLite store {self.path!r} is closed")
        fresh: set[bytes] = set()
        with self._db_lock:
            for start in range(0, len(records), _RECORDS_A_TRANSACTION):
                batch = records[start : start + _RECORDS_A_TRANSACTION]
                picked = self._write(batch)
                if picked is None:
                    fresh.update(_id_bytes(record.id) for record in batch)
                else:
                    fresh.update(picked)
        out = []
        for record in records:
            key = _id_bytes(record.id)
            if key in fresh:
                fresh.discard(key)  # a record given twice is new once
                out.append(record)
        return out

    _WRITE_FAILED = "tokentrail: SQLite store write failed"

    def _write_queued(self) -> None:
        self.flush()  # which keeps the records queued when it fails

    def _release(self) -> None:
        with self._db_lock:
            self._conn.close()

    def _write(self, batch: list[Record]) -> set[bytes] | None:
        """Insert the records not yet in the file and update the rollups, in one transaction; the ids
        (as `ledger` holds them) of the records inserted, None when all were.

        The usual batch holds only new records: multi-row INSERTs add them and the rollup change, summed
        per cell in Python, is one upsert per cell. When the insert skipped some (a replay, or a
        record twice in the batch), the transaction is redone with the new records picked out first.
        Columns are built `_RECORDS_A_CHUNK` records at a time: transposing many more at once runs out
        of the processor's cache."""
        if os.getpid() != self._pid:
            raise StoreError("a SQLiteStore cannot be shared across fork(); open one per process")
        conn = self._conn
        try:
            with _collector_paused():
                built = self._chunks(batch)  # may store a new price rule or `dims` row (committed)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to SQLite store {self.path!r}: {_describe(exc)}") from exc

        picked: list[set[bytes] | None] = [None]

        def transaction() -> None:
            picked[0] = None
            conn.execute("BEGIN IMMEDIATE")  # waits for other writers with the collector running
            try:
                before = conn.total_changes
                with _collector_paused():
                    for columns, _ in built:
                        _insert_columns(conn, columns)
                    inserted = conn.total_changes - before == len(batch)
                    if inserted:
                        spans: list[tuple[int, int]] = []
                        deltas = self._deltas(*_joined(built), spans)
                        _add_to_rollups(conn, deltas)
                        _add_to_sessions(conn, deltas, spans)
                if not inserted:
                    conn.execute("ROLLBACK")
                    conn.execute("BEGIN IMMEDIATE")
                    rows = [row for columns, _ in built for row in zip(*columns, strict=True)]
                    fresh = _fresh_rows(conn, rows)
                    picked[0] = {row[1] for row in fresh}
                    if fresh:
                        fresh_columns = list(zip(*fresh, strict=True))
                        _insert_columns(conn, fresh_columns)
                        fresh_costs = [None if c is None else int(c) for c in fresh_columns[_COST_AT]]
                        fresh_spans: list[tuple[int, int]] = []
                        deltas = self._deltas(fresh_columns, fresh_costs, fresh_spans)
                        _add_to_rollups(conn, deltas)
                        _add_to_sessions(conn, deltas, fresh_spans)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        try:
            _retry(transaction, self._timeout)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to SQLite store {self.path!r}: {_describe(exc)}") from exc
        return picked[0]

    def _rows(self, batch: list[Record]) -> list[tuple[Any, ...]]:
        """The `ledger` rows of `batch` (columns in `_LEDGER_COLUMNS` order)."""
        return [row for columns, _ in self._chunks(batch) for row in zip(*columns, strict=True)]

    def _chunks(self, batch: list[Record]) -> list[tuple[list[Sequence[Any]], Sequence[int | None]]]:
        """`_columns` of `batch`, `_RECORDS_A_CHUNK` records at a time. The caches are trimmed first,
        so none drops a `dims` id the batch's rollup change needs."""
        if max(len(self._dims), len(self._dim_keys), len(self._cell_texts)) >= _SHARED_CACHE_LIMIT:
            self._forget_dims()
        return [
            self._columns(batch[start : start + _RECORDS_A_CHUNK])
            for start in range(0, len(batch), _RECORDS_A_CHUNK)
        ]

    def _columns(self, batch: list[Record]) -> tuple[list[Sequence[Any]], Sequence[int | None]]:
        """The `ledger` columns of a non-empty `batch` (`_LEDGER_COLUMNS` order) and its costs as integers,
        built with C-level helpers (attrgetter, map, zip). Callers trim the caches first (`_chunks`)."""
        count = len(batch)
        fields = list(zip(*map(_record_fields, batch), strict=True))
        stamps, ids, costs, durations, ttfts, usages, attributions, models, providers, rules, unpriced = (
            fields[:11]
        )
        reported, contexts, estimates, non_tokens = fields[11:]
        usage_columns = list(zip(*map(_usage_fields, usages), strict=True))
        row_tokens = usage_columns[: len(_ROW_TOKENS)]
        rare = usage_columns[len(_ROW_TOKENS) : len(_ROW_TOKENS) + len(_RARE_TOKENS)]
        statuses, reasons = usage_columns[-2:]
        keys = list(
            zip(
                map(id, attributions),
                models,
                providers,
                map(id, rules),
                map(id, statuses),
                reasons,
                map(operator.is_, costs, repeat(None)),
                unpriced,
                strict=True,
            )
        )
        dims = list(map(self._dims.get, keys))
        if None in dims:
            known = self._dims
            for i, dim in enumerate(dims):
                if dim is None:  # a key first seen in this chunk: stored once, found after
                    dim = known.get(keys[i])
                    dims[i] = self._dim(batch[i], keys[i]) if dim is None else dim
        cost_texts: list[str | None] = list(map(str, costs))
        if None in costs:
            cost_texts = [None if cost is None else str(cost) for cost in costs]
        try:
            id_bytes: list[bytes] = list(map(_id_to_16_bytes, ids))
        except OverflowError:  # an id outside 0 … 2**128 - 1
            id_bytes = list(map(_id_bytes, ids))
        extra_texts: Sequence[str | None] = (None,) * count
        plain = all(
            column.count(default) == count for column, default in zip(rare, _RARE_DEFAULTS, strict=True)
        )
        if (
            not plain
            or (reported.count(None), contexts.count(None), estimates.count(None)) != (count,) * 3
            or non_tokens.count(0) != count
        ):
            parts = [0 if cost is None else part for cost, part in zip(costs, non_tokens, strict=True)]
            extra_texts = [
                None if r == _RARE_DEFAULTS and e == _NO_EXTRAS and not n else _extra_text(r, *e, n)
                for r, e, n in zip(
                    zip(*rare, strict=True),
                    zip(reported, contexts, estimates, strict=True),
                    parts,
                    strict=True,
                )
            ]
        return [stamps, id_bytes, dims, cost_texts, durations, ttfts, *row_tokens, extra_texts], costs

    def _row(self, record: Record) -> tuple[Any, ...]:
        """The `ledger` row of one record."""
        return self._rows([record])[0]

    def _dim(self, record: Record, fast: tuple[object, ...]) -> int:
        """The `dims` id of the columns `record` shares with others (stored on first sight)."""
        usage = record.usage
        attribution = record.attribution
        shared = (
            attribution.agent,
            attribution.session,
            attribution.user,
            attribution.tool,
            record.model,
            record.provider,
            json.dumps(list(attribution.tags)),
            json.dumps(list(attribution.path)),
            usage.status.value,
            int(record.cost_units is not None),
            usage.reason,
            record.unpriced_reason,
            self._rule_text(record.price_rule),
        )
        dim = self._dim_ids.get(shared)
        if dim is None:
            conn = self._conn
            dim = _retry(lambda: _insert_dim(conn, shared), self._timeout)
            self._dim_ids[shared] = dim
        self._dim_keys[dim] = shared[: len(_KEY_COLUMNS)]
        self._dims[fast] = dim
        self._alive.append((attribution, record.price_rule))  # the objects whose ids key `_dims`
        return dim

    def _forget_dims(self) -> None:
        self._cell_texts.clear()
        self._dims.clear()
        self._alive.clear()
        self._dim_ids.clear()
        self._dim_keys.clear()

    def _deltas(
        self,
        columns: Sequence[Sequence[Any]],
        costs: Sequence[int | None],
        spans: list[tuple[int, int]] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Hourly rollup deltas, one per cell (hour × `dims` row), of `ledger` columns made by `_columns`;
        each cell's (earliest, latest) timestamp is appended to `spans` when given."""
        dims = columns[_DIM_AT]
        stamps = columns[0]
        count = len(dims)
        hour = min(stamps) // HOUR_US
        if max(stamps) // HOUR_US == hour:  # the usual batch: all in one hour
            if dims.count(dims[0]) == count:  # one cell
                return [self._cell_delta(dims[0], hour, columns, costs, None, spans)]
            by_dim: dict[int, list[int]] = {}
            for i, dim in enumerate(dims):
                found = by_dim.get(dim)
                if found is None:
                    by_dim[dim] = [i]
                else:
                    found.append(i)
            return [self._cell_delta(dim, hour, columns, costs, at, spans) for dim, at in by_dim.items()]
        hours = list(map(operator.floordiv, stamps, repeat(HOUR_US)))
        cells: dict[tuple[int, int], list[int]] = {}
        for i, key in enumerate(zip(dims, hours, strict=True)):
            found = cells.get(key)
            if found is None:
                cells[key] = [i]
            else:
                found.append(i)
        return [self._cell_delta(dim, hour, columns, costs, at, spans) for (dim, hour), at in cells.items()]

    def _cell_delta(
        self,
        dim: int,
        hour: int,
        columns: Sequence[Sequence[Any]],
        costs: Sequence[int | None],
        at: list[int] | None,
        spans: list[tuple[int, int]] | None = None,
    ) -> tuple[Any, ...]:
        """The rollup delta (`_ROLLUP_COLUMNS` order) of the rows `at` (None: all) of one cell, in order
        (and the cell's earliest and latest timestamp appended to `spans`, when given)."""
        pick: Callable[[Sequence[Any]], Sequence[Any]]
        if at is None:
            pick = _same
        elif len(at) == 1:
            pick = operator.itemgetter(slice(at[0], at[0] + 1))
        else:
            pick = operator.itemgetter(*at)
        keys = self._dim_keys[dim]
        if spans is not None:
            stamps = pick(columns[0])
            spans.append((min(stamps), max(stamps)))
        cell_costs = pick(costs)
        calls = len(cell_costs)
        cost = sum(filter(None, cell_costs)) if keys[-1] else 0  # a cell's rows are all priced or all not
        durations = pick(columns[_DURATION_AT])
        outputs = pick(columns[_OUTPUT_AT])
        missing = durations.count(None)
        if missing == 0:
            timed, duration, timed_output = calls, sum(durations), sum(outputs)
        else:
            timed = calls - missing
            duration = sum(d for d in durations if d is not None)
            timed_output = sum(o for d, o in zip(durations, outputs, strict=True) if d is not None)
        token_sums = (sum(pick(columns[i])) for i in range(_ROW_TOKENS_AT, _ROW_TOKENS_AT + len(_ROW_TOKENS)))
        tokens = dict(zip(_ROW_TOKENS, token_sums, strict=True))
        tokens |= dict(zip(_RARE_TOKENS, (default * calls for default in _RARE_DEFAULTS), strict=True))
        provider_cost = provider_calls = cost_on_provider = non_token = 0
        extras = pick(columns[_EXTRA_AT])
        if extras.count(None) != calls:
            for text, row_cost in zip(extras, cell_costs, strict=True):
                if text is None:
                    continue
                extra = json.loads(text)
                for name, default in zip(_RARE_TOKENS, _RARE_DEFAULTS, strict=True):
                    tokens[name] += extra.get(name, default) - default
                non_token += int(extra.get("nt", 0))
                reported = extra.get("pc_units")
                if reported is not None:
                    provider_calls += 1
                    provider_cost += int(reported)
                    cost_on_provider += row_cost or 0
        key = (hour, *keys)
        text = self._cell_texts.get((dim, hour))
        if text is None:
            text = self._cell_texts[(dim, hour)] = json.dumps(key)
        return (
            text,
            *key,
            calls,
            str(cost),
            float(duration),
            timed,
            timed_output,
            str(provider_cost),
            provider_calls,
            str(cost_on_provider),
            *(tokens[name] for name in TOKEN_FIELDS),
            str(non_token),
        )

    def _rule_text(self, rule: PriceRule | None) -> str | None:
        """The `rule` column of a record priced by `rule`: the id of its JSON in the `rules` table, as
        text (a v3 file holds the JSON itself; both are read). Caller holds the database lock."""
        if rule is None:
            return None
        known = self._rule_json.get(id(rule))
        if known is not None and known[0] is rule:
            return known[1]
        text = json.dumps(rule.as_dict(), sort_keys=True, default=str)
        reference = self._rule_ids.get(text)
        if reference is None:
            conn = self._conn

            def store() -> str:
                conn.execute("INSERT OR IGNORE INTO rules (text) VALUES (?)", (text,))
                return str(conn.execute("SELECT id FROM rules WHERE text = ?", (text,)).fetchone()[0])

            reference = _retry(store, self._timeout)
            if len(self._rule_ids) >= _SHARED_CACHE_LIMIT:
                self._rule_ids.clear()
            self._rule_ids[text] = reference
        if len(self._rule_json) > _SHARED_CACHE_LIMIT:
            self._rule_json.clear()
        self._rule_json[id(rule)] = (rule, reference)
        return reference

    def _forget_rule_ids(self) -> None:
        self._rule_ids.clear()
        self._rule_json.clear()
        self._forget_dims()

    def _load_rules(self, conn: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
        """Read the price rules `rows` refer to that are not known yet."""
        rule_at = _AT["rule"]
        wanted = {
            row[rule_at]
            for row in rows
            if row[rule_at] is not None
            and not row[rule_at].startswith("{")
            and row[rule_at] not in self._by_ref
        }
        references = list(wanted)
        for start in range(0, len(references), 500):
            chunk = references[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for reference, text in conn.execute(f"SELECT id, text FROM rules WHERE id IN ({marks})", chunk):
                self._by_ref[str(reference)] = PriceRule.from_dict(json.loads(text))
        for reference in wanted:
            self._by_ref.setdefault(reference, None)  # a dangling reference reads as no rule

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
        low = None if since is None else -(-since // HOUR_US)  # first whole hour
        high = None if until is None else until // HOUR_US  # first hour not whole
        # whole days from the daily rollup (unless grouping by hour), other whole hours from the hourly one
        parts = _rollup_parts(where, params, low, high, daily="hour" not in by)
        version = query.prices
        if version is not None:  # the version's change to the rollup, next to the rollup itself
            parts += _rollup_parts(
                where, params, low, high, daily=False, table="rollup_prices", version=version
            )
        if since is not None or until is not None:
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
            if version is not None:
                self._check_version(conn, version)
            found: list[tuple[Any, ...]] = []
            for table, condition, values in parts:
                source, source_params = table, list[Any]()
                if table == "records":
                    source, source_params = _records_source(version)
                sums = _RECORDS_SELECT if table == "records" else _ROLLUP_SELECT
                sql = f"SELECT {group_sql}, {sums} FROM {source}"
                if condition:
                    sql += f" WHERE {condition}"
                found.extend(conn.execute(f"{sql} GROUP BY {group_sql}", [*source_params, *values]))
            return found

        found = self._read(work)
        width = len(columns)
        index = {name: i for i, name in enumerate(columns)}
        groups: dict[tuple[GroupValue, ...], Aggregate] = {}
        for row in found:
            if check is not None and not check(row[index["path"]], row[index["tags"]]):
                continue
            vector = sums_vector(row[width:])
            for group in _groups(row, index, by):
                aggregate = groups.get(group)
                if aggregate is None:
                    aggregate = groups[group] = Aggregate()
                aggregate.add(vector, bool(row[0]), row[1])
        rows = [
            aggregate.row(dict(zip(by, group, strict=True)))
            for group, aggregate in groups.items()
            if aggregate.vector[CALLS]  # a group a price version moved every call out of
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
        if query.prices is None and query.estimated is None:
            return self._history_of_ledger(query, limit)
        where, params, check = _where(query, raw=True)
        source, source_params = _records_source(query.prices)
        select = f"SELECT {', '.join(_q(c) for c in _RECORD_COLUMNS)} FROM {source}"
        sql = _history_sql(select, where, limit if check is None else None, "ts", "id")

        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if query.prices is not None:
                self._check_version(conn, query.prices)
            found = conn.execute(sql, [*source_params, *params]).fetchall()
            self._load_rules(conn, found)
            return found

        rows = self._read(work)
        if limit is not None and check is None:
            rows.reverse()
        path_at, tags_at = _RECORD_COLUMNS.index("path"), _RECORD_COLUMNS.index("tags")
        if check is not None:
            rows = [row for row in rows if check(row[path_at], row[tags_at])]
            if limit is not None:
                rows = rows[-limit:]
        return [self._record(row) for row in rows]

    def _history_of_ledger(self, query: Query, limit: int | None) -> list[Record]:
        """`history` at recorded prices, read from `ledger` joined to `dims` (not the `records` view): the
        shared columns are decoded once per `dims` row, and a session's (or any plain filter's) rows are
        found through the `dims` indexes and `ledger_dim`, not by a scan."""
        where, params, check = _where(query, raw=True)
        select = f"SELECT {_LEDGER_SELECT} FROM ledger l JOIN dims d ON d.id = l.dim"
        sql = _history_sql(select, where, limit if check is None else None, "l.ts", _ID_TEXT)

        def work(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], dict[int, _Shared]]:
            found = conn.execute(sql, params).fetchall()
            return found, self._shared_of(conn, {row[_DIM_AT] for row in found})

        rows, shared = self._read(work)
        if limit is not None and check is None:
            rows.reverse()
        if check is not None:
            rows = [row for row in rows if check(*shared[row[_DIM_AT]].path_tags)]
            if limit is not None:
                rows = rows[-limit:]
        with _collector_paused():  # many short-lived objects: no full collections while they are made
            return list(map(_record_of_ledger, rows, map(shared.__getitem__, map(_dim_of, rows))))

    def _shared_of(self, conn: sqlite3.Connection, dims: set[int]) -> dict[int, _Shared]:
        """The decoded `dims` rows of these ids (cached: a `dims` row never changes)."""
        cache = self._shared
        missing = [dim for dim in dims if dim not in cache]
        if len(cache) + len(missing) > _SHARED_CACHE_LIMIT:
            cache.clear()
            missing = list(dims)
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            marks = ",".join("?" * len(chunk))
            columns = ", ".join(_q(c) for c in _SHARED_COLUMNS)
            rows += conn.execute(f"SELECT id, {columns} FROM dims WHERE id IN ({marks})", chunk).fetchall()
        rule_at = 1 + _SHARED_COLUMNS.index("rule")
        references = {
            row[rule_at]: None
            for row in rows
            if row[rule_at] is not None and not row[rule_at].startswith("{")
        }
        self._load_rules(conn, [(*([None] * _AT["rule"]), reference) for reference in references])
        for row in rows:
            cache[row[0]] = self._decode_shared(row[1:])
        return {dim: cache[dim] for dim in dims}

    def _decode_shared(self, values: Sequence[Any]) -> _Shared:
        agent, session, user, tool, model, provider, tags, path, status, _, reason, unpriced, rule = values
        found: PriceRule | None = None
        if rule is not None and not rule.startswith("{"):
            found = self._by_ref.get(rule)
        elif rule is not None:
            found = self._rules.get(rule) or PriceRule.from_dict(json.loads(rule))
        attribution = intern_attribution(
            agent, session, user, tool, tuple(json.loads(tags)), tuple(json.loads(path))
        )
        return _Shared(
            attribution, model, provider, UsageStatus(status), reason, unpriced, found, (path, tags)
        )

    def reset(self, query: Query) -> int:
        """Forget the records `query` selects, pruned ones included; returns how many were removed.

        Rollup cells of whole hours in the range go as a whole; in the hours `since`/`until` cut through,
        the raw rows' share is subtracted from them."""
        where, params, check = _where(replace(query, prices=None))
        since, until = query.since_us, query.until_us
        low = None if since is None else -(-since // HOUR_US)  # first whole hour
        high = None if until is None else until // HOUR_US  # first hour not whole
        whole = [where] if where else []
        whole_params = list(params)
        if low is not None:
            whole.append("hour >= ?")
            whole_params.append(low)
        if high is not None:
            whole.append("hour < ?")
            whole_params.append(high)
        raw_whole = [where] if where else []
        raw_whole_params = list(params)
        if low is not None:
            raw_whole.append("ts >= ?")
            raw_whole_params.append(low * HOUR_US)
        if high is not None:
            raw_whole.append("ts < ?")
            raw_whole_params.append(high * HOUR_US)
        ranges: list[tuple[int | None, int | None]] = []
        if low is not None and high is not None and low > high:  # inside one hour
            ranges = [(since, until)]
        else:
            if since is not None and low is not None and since < low * HOUR_US:
                ranges.append((since, low * HOUR_US))
            if until is not None and high is not None and high * HOUR_US < until:
                ranges.append((high * HOUR_US, until))

        def matching(conn: sqlite3.Connection, sql: str, values: list[Any]) -> list[tuple[Any, ...]]:
            """Rows of `sql` (whose last two columns are tags and path) that pass the tag check."""
            return [row for row in conn.execute(sql, values) if check is None or check(row[-2], row[-1])]

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                condition = " AND ".join(whole)
                clause = f" WHERE {condition}" if condition else ""
                columns = ", ".join(_q(c) for c in _ROLLUP_COLUMNS)
                cells = matching(conn, f"SELECT {columns}, path, tags FROM rollup_hour{clause}", whole_params)
                cells = [row[:-2] for row in cells]
                touched = {row[_DELTA_SESSION] for row in cells}
                removed = sum(int(row[_ROLLUP_COLUMNS.index("calls")]) for row in cells)
                _add_to_rollups(conn, _negated(cells))
                versioned = matching(
                    conn, f"SELECT version, cell, path, tags FROM rollup_prices{clause}", whole_params
                )
                for row in versioned:
                    conn.execute("DELETE FROM rollup_prices WHERE version = ? AND cell = ?", row[:2])
                condition = " AND ".join(raw_whole)
                clause = f" WHERE {condition}" if condition else ""
                ids = matching(conn, f"SELECT id, path, tags FROM records{clause}", raw_whole_params)
                _delete_records(conn, [row[0] for row in ids])
                for first, last in ranges:  # hours cut through: subtract the raw rows' share
                    cut = " AND ".join([*([where] if where else []), "ts >= ?", "ts < ?"])
                    columns = ", ".join(_q(c) for c in _RECORD_COLUMNS)
                    doomed = matching(
                        conn, f"SELECT {columns}, path, tags FROM records WHERE {cut}", [*params, first, last]
                    )
                    rows = [row[:-2] for row in doomed]
                    touched.update(row[_AT["session"]] for row in rows)
                    _add_to_rollups(conn, _negated(_rollup_deltas(rows)))
                    self._undo_versions(conn, rows)
                    _delete_records(conn, [row[_AT["id"]] for row in rows])
                    removed += len(rows)
                conn.execute("DELETE FROM rollup_hour WHERE calls = 0")
                conn.execute("DELETE FROM rollup_day WHERE calls = 0")
                touched.discard(None)
                _rebuild_sessions(conn, touched)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return removed

        return self._read(work)

    def _undo_versions(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Subtract the price versions' changes of these raw rows from `rollup_prices`."""
        by_id = {row[_AT["id"]]: row for row in rows}
        self._load_rules(conn, rows)
        changes: dict[str, list[_VersionItem]] = {}
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found = conn.execute(
                f"SELECT version, id, cost, non_token FROM costs WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for version, record_id, cost, part in found:
                record = self._record(by_id[record_id])
                units = None if cost is None else int(cost)
                changes.setdefault(version, []).append(
                    (
                        by_id[record_id],
                        record,
                        units,
                        record.cost_units,
                        int(part or 0),
                        record.non_token_units,
                    )
                )
        for version, items in changes.items():
            conn.executemany(_UPSERT_PRICES, _version_deltas(version, items))

    # -- price versions and retention ---------------------------------------------------------------

    def reprice(self, query: Query, price_fn: PriceFunction, version_label: str) -> int:
        """Price the records `query` selects again with `price_fn` into version `version_label`, in one
        transaction; returns how many the version costs differently from their recorded cost.

        The recorded costs stay as they are; `summary`/`history` with `Query(prices=version_label)` read
        the version (records it did not reprice keep their recorded cost)."""
        label = check_version_label(version_label)
        where, params, check = _where(replace(query, prices=None), raw=True)
        columns = ", ".join(f"r.{_q(c)}" for c in _RECORD_COLUMNS)
        sql = (
            f"SELECT * FROM (SELECT {columns}, c.id AS v_id, c.cost AS v_cost, c.non_token AS v_nt FROM records r"
            " LEFT JOIN costs c ON c.version = ? AND c.id = r.id)"
        )
        if where:
            sql += f" WHERE {where}"
        width = len(_RECORD_COLUMNS)
        path_at, tags_at = _AT["path"], _AT["tags"]

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = 0
                items: list[_VersionItem] = []
                selected = conn.execute(sql, [label, *params]).fetchall()
                self._load_rules(conn, selected)
                for found in selected:
                    row = found[:width]
                    if check is not None and not check(row[path_at], row[tags_at]):
                        continue
                    record = self._record(row)
                    had, kept, kept_part = found[width] is not None, found[width + 1], found[width + 2]
                    old = (None if kept is None else int(kept)) if had else record.cost_units
                    old_part = int(kept_part or 0) if had else record.non_token_units
                    cost = price_fn(record)
                    new = cost.total_units if cost.priced else None
                    new_part = cost.non_token_units if cost.priced else 0
                    moved = (new, new_part) != (old, old_part)
                    if moved:
                        items.append((row, record, old, new, old_part, new_part))
                    if (new, new_part) == (record.cost_units, record.non_token_units):
                        if had:
                            conn.execute(
                                "DELETE FROM costs WHERE version = ? AND id = ?", (label, row[_AT["id"]])
                            )
                        continue
                    changed += 1
                    if moved:
                        conn.execute(
                            "INSERT OR REPLACE INTO costs (version, id, hour, priced, cost, rule,"
                            " unpriced_reason, non_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                label,
                                row[_AT["id"]],
                                row[_AT["hour"]],
                                int(new is not None),
                                None if new is None else str(new),
                                self._rule_text(cost.rule),
                                cost.reason if new is None else None,
                                str(new_part) if new_part else None,
                            ),
                        )
                conn.executemany(_UPSERT_PRICES, _version_deltas(label, items))
                conn.execute(
                    "INSERT OR IGNORE INTO price_versions (version, created_us) VALUES (?, ?)",
                    (label, time.time_ns() // 1000),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._forget_rule_ids()  # rules stored in the rolled-back transaction are gone
                raise
            return changed

        return self._read(work)

    def price_versions(self) -> list[str]:
        """The price versions made by `reprice`, oldest first."""

        def work(conn: sqlite3.Connection) -> list[str]:
            return [row[0] for row in conn.execute("SELECT version FROM price_versions ORDER BY created_us")]

        return self._read(work)

    def _check_version(self, conn: sqlite3.Connection, version: str) -> None:
        if conn.execute("SELECT 1 FROM price_versions WHERE version = ?", (version,)).fetchone() is None:
            known = (
                ", ".join(row[0] for row in conn.execute("SELECT version FROM price_versions")) or "none yet"
            )
            raise ValueError(f"no price version {version!r} in this store (known: {known})")

    def non_token_unfilled(self) -> bool:
        """Whether the ledger, migrated from before v9 with costs in it, waits for `fill_non_token`."""
        return self._non_token_unfilled

    def fill_non_token(self, parts: NonTokenParts) -> int:
        """Fill the non-token part of every cost stored before v9 that `parts` can recompute exactly (see
        `_fill_parts`), in one transaction that also clears the ledger's mark; returns how many costs
        gained a part (0 when another process filled them first)."""

        def work(conn: sqlite3.Connection) -> int:
            def records_of(rows: list[Any]) -> list[Record]:
                self._load_rules(conn, rows)
                return [self._record(row) for row in rows]

            conn.execute("BEGIN IMMEDIATE")
            try:
                filled = 0
                if _marked_unfilled(conn):
                    filled = _fill_parts(conn, parts, records_of)
                    conn.execute("DELETE FROM ledger_meta WHERE name = ?", (_UNFILLED,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return filled

        filled = self._read(work)
        self._non_token_unfilled = False
        return filled

    def prune(self, before_us: int) -> int:
        """Delete the raw rows of every UTC hour ending at or before `before_us`; the rollups keep
        counting them, `history` no longer lists them. Returns how many rows were deleted.

        A record replayed after its hour was pruned is not recognized as a duplicate."""
        cut = before_us // HOUR_US * HOUR_US

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM costs WHERE id IN (SELECT id FROM records WHERE ts < ?)", (cut,))
                dropped = conn.execute("DELETE FROM ledger WHERE ts < ?", (cut,)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return int(dropped)

        return self._read(work)

    def raw_count(self, before_us: int) -> int:
        """How many raw rows `prune(before_us)` would delete."""
        cut = before_us // HOUR_US * HOUR_US

        def work(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM ledger WHERE ts < ?", (cut,)).fetchone()[0])

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

    def sessions(self, asked: SessionQuery) -> tuple[int, list[SessionRow]]:
        """One page of the per-session rollup and how many sessions match in all (`SessionQuery`), read
        from the `sessions` table (index on the last call)."""
        conditions, params = _session_window(asked.since_us, asked.until_us)
        search = asked.search
        if search:
            conditions.append(_search_condition(search))
            params += [*_search_params(search), search]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        direction = "DESC" if asked.descending else "ASC"
        keys = [f"{key} {direction}" for key in _SESSION_ORDER[asked.sort]]
        if asked.sort != "session":
            keys.append("session ASC")
        columns = ", ".join(SESSION_COLUMNS)
        counted = ", count(*) OVER ()" if search else ""  # a search is evaluated once, not twice
        page_sql = (
            f"SELECT {columns}{counted} FROM sessions{where} ORDER BY {', '.join(keys)} LIMIT ? OFFSET ?"
        )

        def work(conn: sqlite3.Connection) -> tuple[int, list[tuple[Any, ...]]]:
            rows = conn.execute(page_sql, [*params, int(asked.limit), int(asked.offset)]).fetchall()
            if search and rows:
                return int(rows[0][-1]), [row[: len(SESSION_COLUMNS)] for row in rows]
            total = conn.execute(f"SELECT count(*) FROM sessions{where}", params).fetchone()[0]
            return int(total), rows

        total, rows = self._read(work)
        return total, [table_row(row, json.loads(row[-1])) for row in rows]

    def _record(self, row: Sequence[Any]) -> Record:
        values = dict(zip(_RECORD_COLUMNS, row, strict=True))
        counts = {
            name: int(values[column]) for name, column in zip(TOKEN_FIELDS, _TOKEN_COLUMNS, strict=True)
        }
        usage = Usage(**counts, status=UsageStatus(values["status"]), reason=values["usage_reason"])
        rule = None
        if values["rule"] is not None and not values["rule"].startswith("{"):
            rule = self._by_ref.get(values["rule"])
        elif values["rule"] is not None:
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
            non_token_units=int(values["non_token"] or 0),
        )

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}{' durable' if self.durable else ''}>"


# -- SQL ----------------------------------------------------------------------------------------------

_INSERT_RECORD = (
    f"INSERT OR IGNORE INTO ledger ({', '.join(_q(c) for c in _LEDGER_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_LEDGER_COLUMNS))})"
)
_ROWS_A_STATEMENT = 50  # rows in one multi-row INSERT (600 parameters): far fewer statement steps
_RECORDS_A_TRANSACTION = 50_000  # a flush commits at most this many records a transaction
_RECORDS_A_CHUNK = 4096  # records whose columns are built at a time (cache-sized)
_INSERT_MANY = (
    f"INSERT OR IGNORE INTO ledger ({', '.join(_q(c) for c in _LEDGER_COLUMNS)}) VALUES "
    + ", ".join([f"({', '.join('?' * len(_LEDGER_COLUMNS))})"] * _ROWS_A_STATEMENT)
)


def _insert_flat(conn: sqlite3.Connection, flat: list[Any]) -> None:
    """Insert rows given one after the other in `flat` into `ledger` (a row whose id is there already is
    skipped): whole groups of `_ROWS_A_STATEMENT` rows by one multi-row INSERT each, the rest one by one.
    Every value is a parameter; the store itself writes by `_insert_columns`."""
    _insert_by(conn, flat, len(_LEDGER_COLUMNS), _INSERT_MANY, _INSERT_RECORD)


def _insert_by(conn: sqlite3.Connection, flat: list[Any], width: int, many: str, one: str) -> None:
    """Run `many` (`_ROWS_A_STATEMENT` rows of `width` parameters) over whole groups of the rows in
    `flat`, and `one` over the rest."""
    count = len(flat) // width
    whole = (count - count % _ROWS_A_STATEMENT) * width
    step = _ROWS_A_STATEMENT * width
    if whole:
        conn.executemany(many, [flat[start : start + step] for start in range(0, whole, step)])
    if whole < len(flat):
        conn.executemany(one, [flat[start : start + width] for start in range(whole, len(flat), width)])


def _insert_columns(conn: sqlite3.Connection, columns: Sequence[Sequence[Any]]) -> None:
    """Insert the rows of `ledger` columns (a row whose id is there already is skipped).

    Binding None or `bytes` costs Python's sqlite3 module an adapter lookup per value (about 0.3 µs
    each; int, float, str and bytearray bind directly), so a nullable column that is NULL in every
    row is written as the literal NULL, and ids are bound as bytearrays."""
    count = len(columns[_ID_AT])
    constant = 0
    for bit, at in enumerate(_NULLABLE_AT):
        if columns[at].count(None) == count:
            constant |= 1 << bit
    many, one, kept = _insert_statements(constant)
    bound: list[Sequence[Any]] = [columns[at] for at in kept]
    bound[_ID_AT] = list(map(bytearray, columns[_ID_AT]))  # the columns before `id` are never NULL
    _insert_by(conn, _flat(bound), len(kept), many, one)


@functools.cache
def _insert_statements(constant: int) -> tuple[str, str, tuple[int, ...]]:
    """The multi-row and one-row INSERT of `ledger` rows whose nullable columns flagged in `constant`
    (bit i: `_NULLABLE_AT[i]`) are NULL, and the positions of the columns bound as parameters."""
    null = {at for bit, at in enumerate(_NULLABLE_AT) if constant >> bit & 1}
    kept = tuple(at for at in range(len(_LEDGER_COLUMNS)) if at not in null)
    row = "(" + ", ".join("NULL" if at in null else "?" for at in range(len(_LEDGER_COLUMNS))) + ")"
    head = f"INSERT OR IGNORE INTO ledger ({', '.join(_q(c) for c in _LEDGER_COLUMNS)}) VALUES "
    return head + ", ".join([row] * _ROWS_A_STATEMENT), head + row, kept


def _flat(columns: Sequence[Sequence[Any]]) -> list[Any]:
    """The rows of equally long `columns`, one after the other in one list (strided slice copies)."""
    width = len(columns)
    flat: list[Any] = [None] * (width * len(columns[0]))
    for at, column in enumerate(columns):
        flat[at::width] = column
    return flat


def _joined(
    built: Sequence[tuple[Sequence[Sequence[Any]], Sequence[int | None]]],
) -> tuple[list[Sequence[Any]], Sequence[int | None]]:
    """The columns and costs of several chunks (`_chunks`) as one."""
    if len(built) == 1:
        return list(built[0][0]), built[0][1]
    columns: list[Sequence[Any]] = [
        list(chain.from_iterable(parts)) for parts in zip(*(columns for columns, _ in built), strict=True)
    ]
    return columns, list(chain.from_iterable(costs for _, costs in built))


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert `ledger` rows (those whose id is there already are skipped)."""
    _insert_flat(conn, list(chain.from_iterable(rows)))


def _same(column: Sequence[Any]) -> Sequence[Any]:
    return column


_INSERT_DIM = (
    f"INSERT OR IGNORE INTO dims (key, {', '.join(_q(c) for c in _SHARED_COLUMNS)}) "
    f"VALUES (?, {', '.join('?' * len(_SHARED_COLUMNS))})"
)


def _rollup_columns(token_fields: tuple[str, ...], non_token: bool = False) -> tuple[str, ...]:
    """The columns of a rollup table storing these counts (and, from v9, the non-token cost last)."""
    return (
        "cell",
        "hour",
        *_KEY_COLUMNS,
        *_ROLLUP_SUMS,
        *(f"t_{name}" for name in token_fields),
        *(("non_token",) if non_token else ()),
    )


def _add_sums(columns: tuple[str, ...]) -> str:
    return ", ".join(
        f"{_q(c)} = bigadd({_q(c)}, excluded.{_q(c)})"
        if c in ("cost", "provider_cost", "cost_on_provider", "non_token")
        else f"{_q(c)} = {_q(c)} + excluded.{_q(c)}"
        for c in columns[2 + len(_KEY_COLUMNS) :]
    )


def _upsert_rollup(table: str, columns: tuple[str, ...]) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(_q(c) for c in columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT (cell) DO UPDATE SET {_add_sums(columns)}"
    )


_ROLLUP_COLUMNS = _rollup_columns(TOKEN_FIELDS, non_token=True)
_ADD_SUMS = _add_sums(_ROLLUP_COLUMNS)
_UPSERT_ROLLUP = _upsert_rollup("rollup_hour", _ROLLUP_COLUMNS)
_UPSERT_DAY = _upsert_rollup("rollup_day", _ROLLUP_COLUMNS)
_UPSERT_PRICES = (
    f"INSERT INTO rollup_prices (version, {', '.join(_q(c) for c in _ROLLUP_COLUMNS)}) "
    f"VALUES (?, {', '.join('?' * len(_ROLLUP_COLUMNS))}) ON CONFLICT (version, cell) DO UPDATE SET {_ADD_SUMS}"
)
_VERSIONED = (
    "priced",
    "cost",
    "rule",
    "unpriced_reason",
    "non_token",
)  # the columns a price version replaces
_VERSIONED_SOURCE = (
    "(SELECT "
    + ", ".join(
        f"CASE WHEN c.id IS NULL THEN r.{_q(c)} ELSE c.{_q(c)} END AS {_q(c)}"
        if c in _VERSIONED
        else f"r.{_q(c)}"
        for c in _RECORD_COLUMNS
    )
    + " FROM records r LEFT JOIN costs c ON c.version = ? AND c.id = r.id)"
)


def _records_source(version: str | None) -> tuple[str, list[Any]]:
    """The table expression raw reads use: records as recorded, or as price `version` costs them."""
    if version is None:
        return "records", []
    return _VERSIONED_SOURCE, [version]


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
        "bigsum(non_token)",
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
        "bigsum(non_token)",
    ]
)
_AT = {name: i for i, name in enumerate(_RECORD_COLUMNS)}
_LEDGER_AT = {name: i for i, name in enumerate(_LEDGER_COLUMNS)}
_DIM_AT, _COST_AT, _DURATION_AT = _LEDGER_AT["dim"], _LEDGER_AT["cost"], _LEDGER_AT["duration"]
_ID_AT = _LEDGER_AT["id"]
_NULLABLE_AT = tuple(_LEDGER_AT[c] for c in ("cost", "duration", "ttft", "extra"))
_OUTPUT_AT, _EXTRA_AT = _LEDGER_AT["t_output_tokens"], _LEDGER_AT["extra"]
_ROW_TOKENS_AT = _LEDGER_AT[f"t_{_ROW_TOKENS[0]}"]


@dataclass(frozen=True, slots=True)
class _Shared:
    """A `dims` row decoded: what many records share."""

    attribution: Attribution
    model: str | None
    provider: str | None
    status: UsageStatus
    usage_reason: str | None
    unpriced_reason: str | None
    rule: PriceRule | None
    path_tags: tuple[str, str]  # as stored (JSON), for the tag check


_LEDGER_SELECT = ", ".join(f"l.{_q(c)}" for c in _LEDGER_COLUMNS)
_ID_TEXT = "CASE WHEN length(l.id) = 16 THEN lower(hex(l.id)) ELSE CAST(l.id AS TEXT) END"  # as the view
_dim_of = operator.itemgetter(_DIM_AT)
_EXTRA_DEFAULTS = dict(zip(_RARE_TOKENS, _RARE_DEFAULTS, strict=True))


def _history_sql(select: str, where: str, limit: int | None, ts: str, record_id: str) -> str:
    """`select` with `where`, oldest first, or the last `limit` rows newest first (the caller reverses)."""
    sql = f"{select} WHERE {where}" if where else select
    if limit is not None:
        return f"{sql} ORDER BY {ts} DESC, {record_id} DESC LIMIT {int(limit)}"
    return f"{sql} ORDER BY {ts}, {record_id}"


def _record_of_ledger(row: Sequence[Any], shared: _Shared) -> Record:
    """The record of a `ledger` row (`_LEDGER_COLUMNS` order) and its decoded `dims` row."""
    (
        ts,
        raw_id,
        _,
        cost,
        duration,
        ttft,
        input_tokens,
        output_tokens,
        cache_read,
        cache_write,
        reasoning,
        extra,
    ) = row
    reported = context = estimate = None
    non_token = 0
    if extra is None:
        usage = Usage(
            input_tokens,
            output_tokens,
            cache_read,
            cache_write,
            0,
            reasoning,
            status=shared.status,
            reason=shared.usage_reason,
        )
    else:
        values = json.loads(extra)
        counts = {name: values.get(name, default) for name, default in _EXTRA_DEFAULTS.items()}
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            reasoning_tokens=reasoning,
            **counts,
            status=shared.status,
            reason=shared.usage_reason,
        )
        if values.get("provider_cost") is not None:
            reported = Decimal(values["provider_cost"])
        if values.get("context") is not None:
            context = json.loads(values["context"])
        estimate = values.get("est_input")
        non_token = int(values.get("nt", 0))
    return Record(
        id=int.from_bytes(raw_id, "big") if len(raw_id) == 16 else int(bytes(raw_id).decode(), 16),
        timestamp_us=ts,
        usage=usage,
        model=shared.model,
        provider=shared.provider,
        cost_units=None if cost is None else int(cost),
        price_rule=shared.rule,
        unpriced_reason=shared.unpriced_reason,
        duration_ms=duration,
        attribution=shared.attribution,
        provider_cost=reported,
        context=context,
        estimated_input_tokens=estimate,
        ttft_ms=ttft,
        non_token_units=non_token,
    )


def _extra_text(
    rare: tuple[int, ...], reported: Decimal | None, context: Any, estimate: object, non_token: int = 0
) -> str | None:
    """The `extra` column of a record: its values that are rarely given (JSON; None when all are
    defaults). Amounts and the context are kept as text, exactly as the v4 columns held them."""
    values: dict[str, Any] = {
        name: value
        for name, value, default in zip(_RARE_TOKENS, rare, _RARE_DEFAULTS, strict=True)
        if value != default
    }
    if reported is not None:
        values["provider_cost"] = str(reported)
        values["pc_units"] = str(provider_cost_units(reported))
    if context is not None:
        values["context"] = json.dumps(dict(context), sort_keys=True)
    estimate = _estimate_column(estimate)
    if estimate is not None:
        values["est_input"] = estimate
    if non_token:
        values["nt"] = str(non_token)
    return json.dumps(values) if values else None


def _fresh_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The `ledger` rows whose id is not in the file yet, each id once."""
    ids = [row[1] for row in rows]
    existing: set[bytes] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        existing.update(r[0] for r in conn.execute(f"SELECT id FROM ledger WHERE id IN ({marks})", chunk))
    fresh: dict[bytes, tuple[Any, ...]] = {}
    for row in rows:
        if row[1] not in existing:
            fresh.setdefault(row[1], row)
    return list(fresh.values())


def _rollup_deltas(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rollup rows (one per hour × key) summing raw record rows, ready for `_UPSERT_ROLLUP`."""
    cells: dict[tuple[Any, ...], list[Any]] = {}
    key_at = [_AT[c] for c in _KEY_COLUMNS]
    token_at = [_AT[c] for c in _TOKEN_COLUMNS]
    for row in rows:
        key = (row[_AT["hour"]], *(row[i] for i in key_at))
        sums = cells.get(key)
        if sums is None:
            sums = cells[key] = [0, 0, 0.0, 0, 0, 0, 0, 0, *([0] * len(token_at)), 0]
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
        sums[-1] += int(row[_AT["non_token"]] or 0)
    deltas = []
    for key, sums in cells.items():
        sums[1], sums[5], sums[7], sums[-1] = str(sums[1]), str(sums[5]), str(sums[7]), str(sums[-1])
        deltas.append((json.dumps(key), *key, *sums))
    return deltas


def _add_to_rollups(conn: sqlite3.Connection, deltas: list[tuple[Any, ...]]) -> None:
    """Add hourly rollup deltas to the hourly rollup and, summed per day, to the daily one."""
    conn.executemany(_UPSERT_ROLLUP, deltas)
    conn.executemany(_UPSERT_DAY, _by_day(deltas))


_UPSERT_SESSION = (
    f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}) VALUES ({', '.join('?' * len(SESSION_COLUMNS))})"
    " ON CONFLICT (session) DO UPDATE SET first_ts = min(first_ts, excluded.first_ts),"
    " last_ts = max(last_ts, excluded.last_ts), calls = calls + excluded.calls,"
    " unpriced = unpriced + excluded.unpriced, cost = bigadd(cost, excluded.cost),"
    " non_token = bigadd(non_token, excluded.non_token),"
    " input_tokens = input_tokens + excluded.input_tokens,"
    " output_tokens = output_tokens + excluded.output_tokens, duration = duration + excluded.duration,"
    " agents = CASE WHEN agents = excluded.agents THEN agents ELSE tt_agents(agents, excluded.agents) END"
)
_REPLACE_SESSION = (
    f"INSERT OR REPLACE INTO sessions ({', '.join(SESSION_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(SESSION_COLUMNS))})"
)
_DELTA_AGENT = 2 + _KEY_COLUMNS.index("agent")
_DELTA_SESSION = 2 + _KEY_COLUMNS.index("session")
_DELTA_PRICED = 2 + _KEY_COLUMNS.index("priced")
_DELTA_SUMS = 2 + len(_KEY_COLUMNS)
_DELTA_CALLS = _DELTA_SUMS + _ROLLUP_SUMS.index("calls")
_DELTA_COST = _DELTA_SUMS + _ROLLUP_SUMS.index("cost")
_DELTA_DURATION = _DELTA_SUMS + _ROLLUP_SUMS.index("duration")
_DELTA_NON_TOKEN = len(_ROLLUP_COLUMNS) - 1
_DELTA_INPUT = _DELTA_SUMS + len(_ROLLUP_SUMS) + TOKEN_FIELDS.index("input_tokens")
_DELTA_OUTPUT = _DELTA_SUMS + len(_ROLLUP_SUMS) + TOKEN_FIELDS.index("output_tokens")


def _add_to_sessions(
    conn: sqlite3.Connection, deltas: Sequence[Sequence[Any]], spans: Sequence[tuple[int, int]]
) -> None:
    """Add a batch's hourly rollup deltas (with each cell's earliest and latest timestamp) to the
    per-session rollup, one upsert per session."""
    found: dict[str, SessionRow] = {}
    for delta, (first, last) in zip(deltas, spans, strict=True):
        session = delta[_DELTA_SESSION]
        if session is None:
            continue
        calls = delta[_DELTA_CALLS]
        totals = (
            calls,
            0 if delta[_DELTA_PRICED] else calls,
            int(delta[_DELTA_COST]),
            int(delta[_DELTA_NON_TOKEN]),
            delta[_DELTA_INPUT],
            delta[_DELTA_OUTPUT],
            delta[_DELTA_DURATION],
        )
        add_cell(found, session, totals, (first, last), delta[_DELTA_AGENT])
    if found:
        conn.executemany(_UPSERT_SESSION, map(_session_values, found.values()))


def _session_values(row: SessionRow) -> list[Any]:
    """A session's row as the `sessions` table holds it (cost and its non-token part as decimal text,
    agents as JSON)."""
    values = table_values(row)
    values[5], values[6] = str(values[5]), str(values[6])
    values[-1] = json.dumps(values[-1], ensure_ascii=False)
    return values


def _merge_agents(old: str, new: str) -> str:
    """SQL function: the union of two sorted JSON arrays of agent names, sorted."""
    return json.dumps(sorted({*json.loads(old), *json.loads(new)}), ensure_ascii=False)


def _session_matches(session: str, agents: str, search: str) -> int:
    """SQL function: whether a session's id or one of its agents contains `search` (case-folded)."""
    return int(matches(session, json.loads(agents), search))


def _rebuild_sessions(conn: sqlite3.Connection, names: Iterable[str] | None) -> None:
    """Rebuild the `sessions` rows of `names` (None: every session) from the hourly rollup (its sums,
    which still count pruned records) and the raw rows (first and last call); a session the rollup no
    longer counts loses its row."""
    where, values = "session IS NOT NULL", list[Any]()
    wanted = None if names is None else sorted(set(names))
    if wanted is None:
        conn.execute("DELETE FROM sessions")
    else:  # the names in a temporary table: each query below reads the ledger's tables once
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS tt_session_names (name TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM temp.tt_session_names")
        conn.executemany("INSERT INTO temp.tt_session_names (name) VALUES (?)", ((n,) for n in wanted))
        where = "session IN (SELECT name FROM temp.tt_session_names)"
    for chunk in [wanted]:
        if chunk is not None and not chunk:
            continue
        sums = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT session, sum(calls), sum(CASE WHEN priced THEN 0 ELSE calls END), bigsum(cost),"
                " bigsum(non_token), sum(t_input_tokens), sum(t_output_tokens), total(duration), min(hour), max(hour)"
                f" FROM rollup_hour WHERE {where} GROUP BY session",
                values,
            )
        }
        agents: dict[str, list[str]] = {}
        for session, agent in conn.execute(
            f"SELECT DISTINCT session, agent FROM rollup_hour WHERE {where} AND agent IS NOT NULL", values
        ):
            agents.setdefault(session, []).append(agent)
        raw = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT d.session, count(*), min(l.ts), max(l.ts) FROM dims d JOIN ledger l ON l.dim = d.id"
                f" WHERE d.{where} GROUP BY d.session",
                values,
            )
        }
        old: dict[str, tuple[int, int]] = {}
        if chunk is not None:
            old = {
                row[0]: (row[1], row[2])
                for row in conn.execute(
                    f"SELECT session, first_ts, last_ts FROM sessions WHERE {where}", values
                )
            }
            gone = [name for name in chunk if name not in sums]
            _delete_in(conn, "DELETE FROM sessions WHERE session IN ({})", gone)
        rows = []
        for session, (*totals, low, high) in sums.items():
            if not totals[0]:
                conn.execute("DELETE FROM sessions WHERE session = ?", (session,))
                continue
            totals[2], totals[3] = int(totals[2]), int(totals[3])  # bigsum's text
            row = rebuilt_row(
                session,
                (*totals, low, high),
                raw.get(session),
                old.get(session),
                functools.partial(_hour_counts, conn, session),
                agents.get(session, ()),
            )
            rows.append(_session_values(row))
        conn.executemany(_REPLACE_SESSION, rows)


# sort key → ORDER BY terms over `sessions` (a cost is a non-negative integer as decimal text: shorter
# is smaller, equal lengths compare as text)
_SESSION_ORDER = {
    "last": ("last_ts",),
    "first": ("first_ts",),
    "cost": ("length(cost)", "cost"),
    "calls": ("calls",),
    "tokens": ("input_tokens + output_tokens",),
    "span": ("last_ts - first_ts",),
    "unpriced": ("unpriced",),
    "session": ("session",),
}


def _search_condition(search: str) -> str:
    """The condition on `sessions` of a search: the exact case-folded match (`tt_match`, Python), after a
    test SQLite answers itself that only drops rows that cannot match. For an ASCII search without
    characters JSON escapes, that is: the id or the agents' JSON text holds it in ASCII lower case, or
    holds a character outside printable ASCII (whose case folding may give ASCII: 'ß' → 'ss')."""
    if not _prefilterable(search):
        return "tt_match(session, agents, ?)"
    return (
        "(instr(lower(session), ?) OR instr(lower(agents), ?) OR session GLOB '*[^ -~]*'"
        " OR agents GLOB '*[^ -~]*') AND tt_match(session, agents, ?)"
    )


def _search_params(search: str) -> list[str]:
    """The parameters `_search_condition` adds before the search itself."""
    if not _prefilterable(search):
        return []
    folded = search.casefold()
    return [folded, folded]


def _prefilterable(search: str) -> bool:
    return search.isascii() and search.isprintable() and '"' not in search and "\\" not in search


def _session_window(since_us: int | None, until_us: int | None) -> tuple[list[str], list[Any]]:
    """Conditions on `sessions` for "has a call in [since_us, until_us)". With one bound the first or
    last call decides; with both, a session that began before and ended after the window is asked
    whether it has a call inside: the hourly rollup for the window's whole hours, raw rows for the
    hours the bounds cut through (as `summary` counts them)."""
    if since_us is None and until_us is None:
        return [], []
    if until_us is None:
        return ["last_ts >= ?"], [since_us]
    if since_us is None:
        return ["first_ts < ?"], [until_us]
    low = -(-since_us // HOUR_US)  # first whole hour
    high = until_us // HOUR_US  # first hour not whole
    inside = [
        "EXISTS (SELECT 1 FROM dims d JOIN ledger l ON l.dim = d.id WHERE d.session = sessions.session"
        " AND l.ts >= ? AND l.ts < ?)"
    ]
    values: list[Any] = [since_us, until_us]
    if low < high:
        inside.append(
            "EXISTS (SELECT 1 FROM rollup_hour r WHERE r.session = sessions.session AND r.hour >= ?"
            " AND r.hour < ? AND r.calls > 0)"
        )
        values += [low, high]
    return (
        [
            "last_ts >= ?",
            "first_ts < ?",
            f"(first_ts >= ? OR last_ts < ? OR {' OR '.join(inside)})",
        ],
        [since_us, until_us, since_us, until_us, *values],
    )


def _hour_counts(conn: sqlite3.Connection, session: str, hour: int) -> tuple[int, int]:
    """(calls the hourly rollup counts, raw rows left) of one session in one hour."""
    calls = conn.execute(
        "SELECT coalesce(sum(calls), 0) FROM rollup_hour WHERE session = ? AND hour = ?", (session, hour)
    ).fetchone()[0]
    rows = conn.execute(
        "SELECT count(*) FROM dims d JOIN ledger l ON l.dim = d.id WHERE d.session = ? AND l.ts >= ?"
        " AND l.ts < ?",
        (session, hour * HOUR_US, (hour + 1) * HOUR_US),
    ).fetchone()[0]
    return int(calls), int(rows)


_SUMS_START = 2 + len(_KEY_COLUMNS)
_TEXT_SUMS = (
    *(_SUMS_START + _ROLLUP_SUMS.index(c) for c in ("cost", "provider_cost", "cost_on_provider")),
    len(_ROLLUP_COLUMNS) - 1,  # non_token
)


def _by_day(deltas: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Hourly rollup deltas (or rows) summed into daily ones (keyed by the day's first hour)."""
    days: dict[tuple[Any, ...], list[Any]] = {}
    texts = _TEXT_SUMS
    for delta in deltas:
        if len(delta) != len(_ROLLUP_COLUMNS):  # rows of an older schema (a migration): no non_token
            texts = _TEXT_SUMS[:-1]
        key = (delta[1] // 24 * 24, *delta[2:_SUMS_START])
        sums = days.get(key)
        values = list(delta[_SUMS_START:])
        for i in texts:
            values[i - _SUMS_START] = int(values[i - _SUMS_START])
        if sums is None:
            days[key] = values
        else:
            for i, value in enumerate(values):
                sums[i] += value
    result = []
    for key, sums in days.items():
        for i in texts:
            sums[i - _SUMS_START] = str(sums[i - _SUMS_START])
        result.append((json.dumps(key), *key, *sums))
    return result


def _rollup_parts(
    where: str,
    params: list[Any],
    low: int | None,
    high: int | None,
    daily: bool,
    table: str = "rollup_hour",
    version: str | None = None,
) -> list[tuple[str, str, list[Any]]]:
    """(table, condition, params) reading the whole hours [low, high) (None: unbounded) from rollups:
    whole days from `rollup_day` when `daily`, the other hours from `table` (of `version`)."""

    def part(name: str, first: int | None, last: int | None) -> tuple[str, str, list[Any]]:
        conditions, values = ([where] if where else []), list(params)
        if version is not None:
            conditions.append("version = ?")
            values.append(version)
        if first is not None:
            conditions.append("hour >= ?")
            values.append(first)
        if last is not None:
            conditions.append("hour < ?")
            values.append(last)
        return (name, " AND ".join(conditions), values)

    first_day = None if low is None else -(-low // 24) * 24
    last_day = None if high is None else high // 24 * 24
    if not daily or (first_day is not None and last_day is not None and first_day >= last_day):
        return [part(table, low, high)]
    parts = [part("rollup_day", first_day, last_day)]
    if low is not None and first_day is not None and low < first_day:
        parts.append(part(table, low, first_day))
    if high is not None and last_day is not None and last_day < high:
        parts.append(part(table, last_day, high))
    return parts


def _negated(deltas: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rollup deltas that subtract what `deltas` add."""
    start = 2 + len(_KEY_COLUMNS)
    texts = {start + _ROLLUP_SUMS.index(c) for c in ("cost", "provider_cost", "cost_on_provider")}
    texts.add(len(_ROLLUP_COLUMNS) - 1)  # non_token
    return [
        (*delta[:start], *(str(-int(v)) if i in texts else -v for i, v in enumerate(delta[start:], start)))
        for delta in deltas
    ]


# (raw row, its record, version cost before, after, non-token part before, after)
_VersionItem = tuple[Sequence[Any], Record, int | None, int | None, int, int]


def _version_deltas(version: str, items: Iterable[_VersionItem]) -> list[tuple[Any, ...]]:
    """`rollup_prices` deltas of price `version` moving each (raw row, record) from one cost (and non-token
    part) to another."""
    cells: dict[tuple[Any, ...], list[int | float]] = {}
    key_at = [_AT[c] for c in _KEY_COLUMNS[:-1]]
    for row, record, old, new, old_part, new_part in items:
        reported = row[_AT["pc_units"]]
        vectors = reprice_vectors(
            record, None if reported is None else int(reported), old, new, old_part, new_part
        )
        for priced, vector in vectors:
            key = (row[_AT["hour"]], *(row[i] for i in key_at), int(priced))
            sums = cells.get(key)
            if sums is None:
                cells[key] = vector
            else:
                for i, value in enumerate(vector):
                    sums[i] += value
    deltas = []
    for key, sums in cells.items():
        values: list[Any] = list(sums)
        for i in (COST, PROVIDER_COST, COST_ON_PROVIDER_CALLS, NON_TOKEN):
            values[i] = str(values[i])
        deltas.append((version, json.dumps(key), *key, *values))
    return deltas


def _delete_in(conn: sqlite3.Connection, sql: str, values: list[Any]) -> None:
    """Run `sql` (with one `IN ({})`) over `values` in chunks SQLite's parameter limit allows."""
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        conn.execute(sql.format(",".join("?" * len(chunk))), chunk)


def _delete_records(conn: sqlite3.Connection, ids: list[str]) -> None:
    """Delete raw rows (ids as the `records` view shows them) and their price versions' costs."""
    _delete_in(conn, "DELETE FROM costs WHERE id IN ({})", ids)
    _delete_in(conn, "DELETE FROM ledger WHERE id IN ({})", [_id_bytes_of_text(i) for i in ids])


def _where(query: Query, raw: bool = False) -> tuple[str, list[Any], Callable[[str, str], bool] | None]:
    """SQL conditions (exact, parameterized) for the plain filters, and a Python check for
    path and tag filters (None when there are none). `raw` adds the time range; without it (rollups), a
    filter only raw records answer (`estimated`) is refused."""
    conditions: list[str] = []
    params: list[Any] = []
    tag_options: list[object] | None = None
    if not raw:
        query.check_rollup_filters()
    for name, wanted in query.filters:
        options = filter_options(wanted)
        if name == "tag":
            tag_options = list(options)
            continue
        if name == "estimated":
            allowed = query.estimated or frozenset()
            if allowed == {True}:  # the rows of the partial index `ledger_estimated` (SQLite matches its
                # condition only when written against `ledger`, not through the `records` view)
                conditions.append(
                    f"est_input IS NOT NULL AND ts IN (SELECT ts FROM ledger WHERE {_ESTIMATED})"
                )
            elif allowed == {False}:
                conditions.append("est_input IS NULL")
            elif not allowed:
                conditions.append("0")
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


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Keep Python's cyclic garbage collector from running while a batch is built and inserted: the
    batch's short-lived tuples would otherwise set off full collections that walk the whole heap (tens of
    ms each in a process holding many objects). Not held while waiting for another writer's lock (only
    storing a first-seen `dims` row may wait inside). Left alone when the application disabled it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_OPEN_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


def _mark_forked() -> None:
    """In a child process made by fork(): every store the parent opened refuses appends."""
    for store in list(_OPEN_STORES):
        store._forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)
