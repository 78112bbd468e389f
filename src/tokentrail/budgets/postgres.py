"""Budget counters in Postgres (psycopg 3): each operation is one transaction that creates the heads it
writes, locks every head it reads with `SELECT … ORDER BY head FOR UPDATE` (a fixed order, so racing
transactions queue instead of deadlocking) and writes back. Machines sharing the database share limits.
Money is NUMERIC(60, 0) of exact 10**-24 USD units. Install with `pip install 'tokentrail[postgres]'`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tokentrail.budgets import _engine
from tokentrail.budgets._engine import NO_LEASE, Head, head_from_row
from tokentrail.budgets.backend import HeadRow, ReserveOutcome, SettleOutcome, Slot, Tally
from tokentrail.errors import StoreError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresBackend"]

T = TypeVar("T")

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_RETRIES = 8
_SWEEP_SECONDS = 300.0
_HEAD_COLUMNS = (
    "head, budget, scope_key, window_key, spent_units, spent_tokens, reserved_units, reserved_tokens, "
    "alert_level, next_lease, expires_at"
)


def _ddl(schema: str) -> list[str]:
    return [
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        f"""CREATE TABLE IF NOT EXISTS "{schema}".tt_budget_heads (
            head TEXT PRIMARY KEY,
            budget TEXT NOT NULL,
            scope_key TEXT NOT NULL,
            window_key TEXT NOT NULL,
            spent_units NUMERIC(60, 0) NOT NULL DEFAULT 0,
            spent_tokens BIGINT NOT NULL DEFAULT 0,
            reserved_units NUMERIC(60, 0) NOT NULL DEFAULT 0,
            reserved_tokens BIGINT NOT NULL DEFAULT 0,
            alert_level INTEGER NOT NULL DEFAULT 0,
            next_lease DOUBLE PRECISION,
            expires_at DOUBLE PRECISION NOT NULL
        )""",
        f'CREATE INDEX IF NOT EXISTS tt_budget_heads_budget ON "{schema}".tt_budget_heads (budget, expires_at)',
        f'CREATE INDEX IF NOT EXISTS tt_budget_heads_expiry ON "{schema}".tt_budget_heads (expires_at)',
        f"""CREATE TABLE IF NOT EXISTS "{schema}".tt_budget_entries (
            reservation TEXT NOT NULL,
            head TEXT NOT NULL,
            units NUMERIC(60, 0) NOT NULL,
            tokens BIGINT NOT NULL,
            lease_until DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (reservation, head)
        )""",
        f'CREATE INDEX IF NOT EXISTS tt_budget_entries_head ON "{schema}".tt_budget_entries (head, lease_until)',
        f"""CREATE TABLE IF NOT EXISTS "{schema}".tt_budget_definitions (
            budget TEXT PRIMARY KEY,
            definition JSONB,
            limit_override JSONB
        )""",
        *(body.replace("{s}", f'"{schema}"') for body in _FUNCTIONS),
    ]


# The engine's rules (tokentrail.budgets._engine) as server-side functions, so reserve, settle and
# release are one round trip each and hold their row locks only while the server runs them. Each
# function locks the heads it reads in key order (`p_keys` arrives sorted), reads them into arrays in
# the same statement, works on the arrays and writes back in one statement.
# Slots arrive as JSON: {"heads": [...], "budget", "scope_key", "window_key", "expires_at",
# "limit_units", "limit_tokens", "alert_units", "alert_tokens", "enforce", "units", "tokens"}; JSON
# numbers are NUMERIC in Postgres, so 10**-24 USD amounts stay exact.
_READ_HEADS = """
    SELECT coalesce(array_agg(head ORDER BY head), '{}'), array_agg(spent_units ORDER BY head),
           array_agg(spent_tokens ORDER BY head), array_agg(reserved_units ORDER BY head),
           array_agg(reserved_tokens ORDER BY head), array_agg(alert_level ORDER BY head),
           array_agg(coalesce(next_lease, 'infinity') ORDER BY head)
      INTO hk, su, st, ru, rt, lv, nl
      FROM (SELECT * FROM {s}.tt_budget_heads WHERE head = ANY(p_keys) ORDER BY head FOR UPDATE) AS locked;
"""
_LOCK_HEADS = (
    _READ_HEADS
    + """
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_slots) AS x WHERE NOT (x->'heads'->>0 = ANY(hk))) THEN
        INSERT INTO {s}.tt_budget_heads (head, budget, scope_key, window_key, expires_at)
            SELECT DISTINCT ON (x->'heads'->>0) x->'heads'->>0, x->>'budget', x->>'scope_key',
                   x->>'window_key', (x->>'expires_at')::float8
            FROM jsonb_array_elements(p_slots) AS x ORDER BY x->'heads'->>0
            ON CONFLICT (head) DO NOTHING;
"""
    + _READ_HEADS
    + """
    END IF;
"""
)
_DECLARE = """
    DECLARE
        hk text[]; su numeric[]; st bigint[]; ru numeric[]; rt bigint[]; lv int[]; nl float8[];
        s jsonb; k text; i int; j int; n int := jsonb_array_length(p_slots);
        wsu numeric; wst bigint; wru numeric; wrt bigint;
        tallies jsonb := '[]'::jsonb;
"""
_FUNCTIONS = (
    """CREATE OR REPLACE FUNCTION {s}.tt_budget_reserve_v2(
        p_rid text, p_now float8, p_lease float8, p_keys text[], p_slots jsonb) RETURNS jsonb
    LANGUAGE plpgsql AS $$"""
    + _DECLARE
    + """
        refused int := NULL;
    BEGIN"""
    + _LOCK_HEADS
    + """
        IF EXISTS (SELECT 1 FROM unnest(nl) AS lease WHERE lease <= p_now) THEN
            WITH gone AS (
                DELETE FROM {s}.tt_budget_entries
                WHERE head = ANY(hk) AND lease_until <= p_now RETURNING head, units, tokens
            ), sums AS (SELECT head, sum(units) AS u, sum(tokens) AS t FROM gone GROUP BY head)
            UPDATE {s}.tt_budget_heads AS hd
               SET reserved_units = hd.reserved_units - coalesce(sums.u, 0),
                   reserved_tokens = hd.reserved_tokens - coalesce(sums.t, 0),
                   next_lease = (SELECT min(lease_until) FROM {s}.tt_budget_entries e WHERE e.head = hd.head)
              FROM (SELECT h FROM unnest(hk, nl) AS z(h, lease) WHERE lease <= p_now) AS due
              LEFT JOIN sums ON sums.head = due.h
             WHERE hd.head = due.h;"""
    + _READ_HEADS
    + """
        END IF;
        FOR i IN 0 .. n - 1 LOOP
            s := p_slots->i;
            wsu := 0; wst := 0; wru := 0; wrt := 0;
            FOR k IN SELECT jsonb_array_elements_text(s->'heads') LOOP
                j := array_position(hk, k);
                IF j IS NOT NULL THEN
                    wsu := wsu + su[j]; wst := wst + st[j]; wru := wru + ru[j]; wrt := wrt + rt[j];
                END IF;
            END LOOP;
            tallies := tallies || jsonb_build_array(jsonb_build_array(wsu, wst, wru, wrt));
            IF refused IS NULL AND (s->>'enforce')::boolean AND (
                (s->>'limit_units' IS NOT NULL AND wsu + wru + (s->>'units')::numeric > (s->>'limit_units')::numeric)
                OR (s->>'limit_tokens' IS NOT NULL
                    AND wst + wrt + (s->>'tokens')::bigint > (s->>'limit_tokens')::bigint)) THEN
                refused := i;
            END IF;
        END LOOP;
        IF refused IS NOT NULL THEN
            RETURN jsonb_build_object('refused', refused, 'tallies', tallies);
        END IF;
        WITH req AS (
            SELECT x->'heads'->>0 AS head, (x->>'units')::numeric AS u, (x->>'tokens')::bigint AS t,
                   (x->>'expires_at')::float8 AS x
            FROM jsonb_array_elements(p_slots) AS x
        ), held AS (
            INSERT INTO {s}.tt_budget_entries (reservation, head, units, tokens, lease_until)
            SELECT p_rid, head, u, t, p_lease FROM req WHERE u <> 0 OR t <> 0
            ON CONFLICT (reservation, head) DO UPDATE
                SET units = EXCLUDED.units, tokens = EXCLUDED.tokens, lease_until = EXCLUDED.lease_until
        )
        UPDATE {s}.tt_budget_heads AS hd
           SET reserved_units = hd.reserved_units + req.u, reserved_tokens = hd.reserved_tokens + req.t,
               next_lease = CASE WHEN req.u <> 0 OR req.t <> 0 THEN least(hd.next_lease, p_lease)
                                 ELSE hd.next_lease END,
               expires_at = greatest(hd.expires_at, req.x)
          FROM req WHERE hd.head = req.head;
        RETURN jsonb_build_object('refused', NULL, 'tallies', tallies);
    END $$""",
    """CREATE OR REPLACE FUNCTION {s}.tt_budget_settle_v2(
        p_rid text, p_now float8, p_keys text[], p_slots jsonb) RETURNS jsonb
    LANGUAGE plpgsql AS $$"""
    + _DECLARE
    + """
        gh text[]; gu numeric[]; gt bigint[]; fired int; lvl int; tlvl int; a jsonb;
        crossed jsonb := '[]'::jsonb; touched int[] := '{}';
    BEGIN"""
    + _LOCK_HEADS
    + """
        IF p_rid IS NOT NULL THEN
            WITH gone AS (
                DELETE FROM {s}.tt_budget_entries WHERE reservation = p_rid RETURNING head, units, tokens
            )
            SELECT array_agg(head), array_agg(units), array_agg(tokens) INTO gh, gu, gt FROM gone;
            FOR i IN 1 .. coalesce(array_length(gh, 1), 0) LOOP
                j := array_position(hk, gh[i]);
                IF j IS NOT NULL THEN
                    ru[j] := ru[j] - gu[i]; rt[j] := rt[j] - gt[i]; touched := touched || j;
                END IF;
            END LOOP;
        END IF;
        FOR i IN 0 .. n - 1 LOOP
            s := p_slots->i;
            j := array_position(hk, s->'heads'->>0);
            su[j] := su[j] + (s->>'units')::numeric; st[j] := st[j] + (s->>'tokens')::bigint;
            touched := touched || j;
            wsu := 0; wst := 0; wru := 0; wrt := 0; fired := 0;
            FOR k IN SELECT jsonb_array_elements_text(s->'heads') LOOP
                j := array_position(hk, k);
                IF j IS NOT NULL THEN
                    wsu := wsu + su[j]; wst := wst + st[j]; wru := wru + ru[j]; wrt := wrt + rt[j];
                    fired := greatest(fired, lv[j]);
                END IF;
            END LOOP;
            tallies := tallies || jsonb_build_array(jsonb_build_array(wsu, wst, wru, wrt));
            lvl := 0;
            FOR a IN SELECT jsonb_array_elements(s->'alert_units') LOOP
                EXIT WHEN wsu = 0 OR wsu < a::text::numeric;
                lvl := lvl + 1;
            END LOOP;
            tlvl := 0;
            FOR a IN SELECT jsonb_array_elements(s->'alert_tokens') LOOP
                EXIT WHEN wst = 0 OR wst < a::text::numeric;
                tlvl := tlvl + 1;
            END LOOP;
            lvl := greatest(lvl, tlvl);
            IF lvl > fired THEN
                lv[array_position(hk, s->'heads'->>0)] := lvl;
                crossed := crossed || jsonb_build_array(jsonb_build_array(fired, lvl));
            ELSE
                crossed := crossed || jsonb_build_array(jsonb_build_array(0, 0));
            END IF;
        END LOOP;
        UPDATE {s}.tt_budget_heads AS hd
           SET spent_units = w.su, spent_tokens = w.st, reserved_units = w.ru, reserved_tokens = w.rt,
               alert_level = w.lv,
               expires_at = greatest(hd.expires_at, coalesce(x.x, hd.expires_at))
          FROM (SELECT DISTINCT hk[p] AS head, su[p] AS su, st[p] AS st, ru[p] AS ru, rt[p] AS rt, lv[p] AS lv
                  FROM unnest(touched) AS p) AS w
          LEFT JOIN (SELECT x->'heads'->>0 AS head, max((x->>'expires_at')::float8) AS x
                       FROM jsonb_array_elements(p_slots) AS x GROUP BY 1) AS x ON x.head = w.head
         WHERE hd.head = w.head;
        RETURN jsonb_build_object('tallies', tallies, 'crossed', crossed);
    END $$""",
    """CREATE OR REPLACE FUNCTION {s}.tt_budget_release_v2(p_rid text, p_keys text[]) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM {s}.tt_budget_heads WHERE head = ANY(p_keys) ORDER BY head FOR UPDATE;
        WITH gone AS (
            DELETE FROM {s}.tt_budget_entries WHERE reservation = p_rid RETURNING head, units, tokens
        )
        UPDATE {s}.tt_budget_heads AS hd SET reserved_units = hd.reserved_units - gone.units,
               reserved_tokens = hd.reserved_tokens - gone.tokens
        FROM gone WHERE hd.head = gone.head;
    END $$""",
)


class PostgresBackend:
    """Budget counters in schema `schema` of the database at `url` (created if missing).

    Connections come from a `psycopg_pool.ConnectionPool` of up to `max_connections` per process
    (rebuilt after a fork). Deadlocks and serialization failures are retried. Counter transactions run
    with `synchronous_commit = off` unless `synchronous_commit=True`: a crash of the database server (not
    of a client) may then lose the last fraction of a second of counts, in exchange for not waiting on
    a disk flush per reservation.
    """

    blocking = True

    def __init__(
        self,
        url: str,
        *,
        schema: str = "tokentrail",
        max_connections: int = 10,
        synchronous_commit: bool = False,
        connect_timeout: float = 10.0,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema must be a plain SQL identifier, got {schema!r}")
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "the Postgres budget backend needs psycopg 3 and psycopg-pool: "
                "pip install 'tokentrail[postgres]'"
            ) from exc
        self.url = url
        self.schema = schema
        self._max_connections = max_connections
        self._synchronous_commit = synchronous_commit
        self._connect_timeout = connect_timeout
        self._pool: ConnectionPool[Any] | None = None
        self._pid = 0
        self._pool_lock = threading.Lock()
        self._next_sweep = 0.0
        s = f'"{schema}"'
        self._schema = s
        self._heads = f"{s}.tt_budget_heads"
        self._entries = f"{s}.tt_budget_entries"
        self._definitions = f"{s}.tt_budget_definitions"
        self._create_schema()

    # -- connections and transactions -------------------------------------------------------------------

    def _get_pool(self) -> ConnectionPool[Any]:
        if self._pool is None or self._pid != os.getpid():
            with self._pool_lock:
                if self._pool is None or self._pid != os.getpid():
                    from psycopg_pool import ConnectionPool

                    self._pool = ConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self._max_connections,
                        open=True,
                        timeout=self._connect_timeout,
                        name="tokentrail-budgets",
                        kwargs={"autocommit": True},
                        configure=None if self._synchronous_commit else _asynchronous_commit,
                    )
                    self._pid = os.getpid()
        return self._pool

    def _create_schema(self) -> None:
        def create(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tokentrail-budgets:{self.schema}",))
            for statement in _ddl(self.schema):
                conn.execute(statement)

        self._transact(create)

    def _transact(self, step: Callable[[psycopg.Connection[Any]], T], *, single: bool = False) -> T:
        """Run `step` in one transaction (`single`: it is one statement, atomic by itself)."""
        import psycopg
        from psycopg import errors

        for attempt in range(_RETRIES):
            try:
                with self._get_pool().connection() as conn:
                    if single:
                        return step(conn)
                    with conn.transaction():
                        return step(conn)
            except (errors.DeadlockDetected, errors.SerializationFailure, errors.UniqueViolation):
                if attempt == _RETRIES - 1:
                    raise
                time.sleep(0.001 * (attempt + 1))
            except psycopg.Error as exc:
                raise StoreError(f"budget database {self.schema!r}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, now: float, step: Callable[[_PostgresTxn], T]) -> T:
        def in_transaction(conn: psycopg.Connection[Any]) -> T:
            if now >= self._next_sweep:
                self._sweep(conn, now)
            return step(_PostgresTxn(conn, self))

        return self._transact(in_transaction)

    def _sweep(self, conn: psycopg.Connection[Any], now: float) -> None:
        """Forget heads whose window (and its grace period) has ended, with their entries."""
        self._next_sweep = now + _SWEEP_SECONDS
        expired = conn.execute(
            f"SELECT head FROM {self._heads} WHERE expires_at <= %s ORDER BY head FOR UPDATE SKIP LOCKED",
            (now,),
        ).fetchall()
        if expired:
            keys = [row[0] for row in expired]
            conn.execute(f"DELETE FROM {self._entries} WHERE head = ANY(%s)", (keys,))
            conn.execute(f"DELETE FROM {self._heads} WHERE head = ANY(%s)", (keys,))

    # -- counters -------------------------------------------------------------------------------------------

    def reserve(
        self,
        reservation: str,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        lease_until: float,
    ) -> ReserveOutcome:
        payload = _payload(slots, charges)
        result = self._call(
            f"SELECT {self._schema}.tt_budget_reserve_v2(%s, %s, %s, %s, %s)",
            (reservation, now, lease_until, _keys(slots), payload),
            now,
        )
        tallies = tuple(_tally(t) for t in result["tallies"])
        return (result["refused"], tallies)

    def settle(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
    ) -> SettleOutcome:
        payload = _payload(slots, charges)
        result = self._call(
            f"SELECT {self._schema}.tt_budget_settle_v2(%s, %s, %s, %s)",
            (reservation, now, _keys(slots), payload),
            now,
        )
        return (
            tuple(_tally(t) for t in result["tallies"]),
            tuple(tuple(range(low, high)) for low, high in result["crossed"]),
        )

    def release(self, reservation: str, slots: Sequence[Slot], now: float) -> None:
        writable = sorted({slot.heads[0] for slot in slots})
        self._call(f"SELECT {self._schema}.tt_budget_release_v2(%s, %s)", (reservation, writable), now)

    def _call(self, query: str, params: tuple[object, ...], now: float) -> Any:
        if now >= self._next_sweep:
            self._transact(lambda conn: self._sweep(conn, now))

        def call(conn: psycopg.Connection[Any]) -> Any:
            row = conn.execute(query, params).fetchone()
            return None if row is None else row[0]

        return self._transact(call, single=True)

    def read(self, slots: Sequence[Slot], now: float) -> list[Tally]:
        return self._run(now, lambda txn: _engine.tallies(txn, slots, now))

    def heads(self, budget: str, now: float) -> list[HeadRow]:
        def listing(txn: _PostgresTxn) -> list[HeadRow]:
            rows = txn.conn.execute(
                f"SELECT {_HEAD_COLUMNS} FROM {self._heads} WHERE budget = %s AND expires_at > %s "
                "ORDER BY head FOR UPDATE",
                (budget, now),
            ).fetchall()
            found = {row[0]: head_from_row(row) for row in rows}
            _engine._purge(txn, found, now)
            txn.save(found.values())
            return [head.row() for head in found.values()]

        return self._run(now, listing)

    # -- definitions and operator actions ---------------------------------------------------------------

    def register(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        from psycopg.types.json import Jsonb

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {self._definitions} (budget, definition) VALUES (%s, %s) "
                    "ON CONFLICT (budget) DO UPDATE SET definition = EXCLUDED.definition",
                    [(name, Jsonb(dict(definition))) for name, definition in sorted(definitions.items())],
                )

        self._transact(write)

    def definitions(self) -> dict[str, dict[str, Any]]:
        def read(conn: psycopg.Connection[Any]) -> list[Any]:
            return conn.execute(
                f"SELECT budget, definition FROM {self._definitions} WHERE definition IS NOT NULL"
            ).fetchall()

        return {name: dict(definition) for name, definition in self._transact(read)}

    def set_limits(self, budget: str, limits: tuple[int | None, int | None] | None) -> None:
        from psycopg.types.json import Jsonb

        value = None if limits is None else Jsonb([None if v is None else str(v) for v in limits])

        def write(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                f"INSERT INTO {self._definitions} (budget, limit_override) VALUES (%s, %s) "
                "ON CONFLICT (budget) DO UPDATE SET limit_override = EXCLUDED.limit_override",
                (budget, value),
            )

        self._transact(write)

    def limits(self) -> dict[str, tuple[int | None, int | None]]:
        def read(conn: psycopg.Connection[Any]) -> list[Any]:
            return conn.execute(
                f"SELECT budget, limit_override FROM {self._definitions} WHERE limit_override IS NOT NULL"
            ).fetchall()

        found = {}
        for name, override in self._transact(read):
            units, tokens = override if isinstance(override, list) else json.loads(override)
            found[name] = (None if units is None else int(units), None if tokens is None else int(tokens))
        return found

    def reset(self, budget: str, scope_key: str | None = None) -> int:
        where = "budget = %s" + ("" if scope_key is None else " AND scope_key = %s")
        params = (budget,) if scope_key is None else (budget, scope_key)

        def wipe(conn: psycopg.Connection[Any]) -> int:
            rows = conn.execute(
                f"SELECT head FROM {self._heads} WHERE {where} ORDER BY head FOR UPDATE",
                params,
            ).fetchall()
            keys = [row[0] for row in rows]
            conn.execute(f"DELETE FROM {self._entries} WHERE head = ANY(%s)", (keys,))
            conn.execute(f"DELETE FROM {self._heads} WHERE head = ANY(%s)", (keys,))
            return len(keys)

        return self._transact(wipe)

    def drop_schema(self) -> None:
        """Drop the schema and everything in it (tests use a schema of their own)."""
        self._transact(lambda conn: conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()

    def __repr__(self) -> str:
        return f"PostgresBackend(schema={self.schema!r})"


class _PostgresTxn:
    """The engine's view of one open transaction."""

    __slots__ = ("backend", "conn")

    def __init__(self, conn: psycopg.Connection[Any], backend: PostgresBackend) -> None:
        self.conn = conn
        self.backend = backend

    def lock(self, slots: Sequence[Slot]) -> dict[str, Head]:
        backend = self.backend
        writable = sorted({slot.heads[0]: slot for slot in slots}.items())
        with self.conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {backend._heads} (head, budget, scope_key, window_key, expires_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (head) DO NOTHING",
                [(key, s.budget, s.scope_key, s.window_key, s.expires_at) for key, s in writable],
            )
        keys = sorted({key for slot in slots for key in slot.heads})
        rows = self.conn.execute(
            f"SELECT {_HEAD_COLUMNS} FROM {backend._heads} WHERE head = ANY(%s) ORDER BY head FOR UPDATE",
            (keys,),
        ).fetchall()
        found = {row[0]: head_from_row(row) for row in rows}
        for slot in slots:
            for key in slot.heads:
                if key not in found:
                    found[key] = Head(key, slot.budget, slot.scope_key, slot.window_key, slot.expires_at)
        return found

    def take_expired(self, heads: Sequence[Head], now: float) -> Iterable[tuple[str, int, int]]:
        rows = self.conn.execute(
            f"DELETE FROM {self.backend._entries} WHERE head = ANY(%s) AND lease_until <= %s "
            "RETURNING head, units, tokens",
            ([head.key for head in heads], now),
        ).fetchall()
        return [(head, int(units), int(tokens)) for head, units, tokens in rows]

    def next_lease(self, head: str) -> float:
        row = self.conn.execute(
            f"SELECT MIN(lease_until) FROM {self.backend._entries} WHERE head = %s",
            (head,),
        ).fetchone()
        return NO_LEASE if row is None or row[0] is None else float(row[0])

    def add_entries(
        self, reservation: str, entries: Sequence[tuple[str, int, int]], lease_until: float
    ) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {self.backend._entries} (reservation, head, units, tokens, lease_until) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (reservation, head) DO UPDATE SET "
                "units = EXCLUDED.units, tokens = EXCLUDED.tokens, lease_until = EXCLUDED.lease_until",
                [(reservation, head, units, tokens, lease_until) for head, units, tokens in entries],
            )

    def pop_entries(self, reservation: str) -> Iterable[tuple[str, int, int]]:
        rows = self.conn.execute(
            f"DELETE FROM {self.backend._entries} WHERE reservation = %s RETURNING head, units, tokens",
            (reservation,),
        ).fetchall()
        return [(head, int(units), int(tokens)) for head, units, tokens in rows]

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
                        head.spent_units,
                        head.spent_tokens,
                        head.reserved_units,
                        head.reserved_tokens,
                        head.alert_level,
                        None if head.next_lease == NO_LEASE else head.next_lease,
                        head.expires_at,
                    )
                )
        if not rows:
            return
        with self.conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {self.backend._heads} ({_HEAD_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s::numeric, %s, %s::numeric, %s, %s, %s, %s) "
                "ON CONFLICT (head) DO UPDATE SET spent_units = EXCLUDED.spent_units, "
                "spent_tokens = EXCLUDED.spent_tokens, reserved_units = EXCLUDED.reserved_units, "
                "reserved_tokens = EXCLUDED.reserved_tokens, alert_level = EXCLUDED.alert_level, "
                "next_lease = EXCLUDED.next_lease, expires_at = EXCLUDED.expires_at",
                rows,
            )


def _payload(slots: Sequence[Slot], charges: Sequence[tuple[int, int]]) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(
        [
            {
                "heads": list(slot.heads),
                "budget": slot.budget,
                "scope_key": slot.scope_key,
                "window_key": slot.window_key,
                "expires_at": slot.expires_at,
                "limit_units": slot.limit_units,
                "limit_tokens": slot.limit_tokens,
                "alert_units": list(slot.alert_units),
                "alert_tokens": list(slot.alert_tokens),
                "enforce": slot.enforce,
                "units": units,
                "tokens": tokens,
            }
            for slot, (units, tokens) in zip(slots, charges, strict=True)
        ]
    )


def _keys(slots: Sequence[Slot]) -> list[str]:
    """Every head the slots name, sorted: the order rows are locked in."""
    return sorted({key for slot in slots for key in slot.heads})


def _tally(values: Sequence[Any]) -> Tally:
    spent_units, spent_tokens, reserved_units, reserved_tokens = values
    return Tally(int(spent_units), int(spent_tokens), int(reserved_units), int(reserved_tokens))


def _asynchronous_commit(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET synchronous_commit = off")
