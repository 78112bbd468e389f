"""Statements that take a current ledger back to an older schema version — before v10 (Postgres: v6: no
non-token part per session), before v9 (Postgres: v5: no non-token amounts at all) — so tests of older
migrations can make their old ledger with today's store and go back one version at a time."""

from __future__ import annotations

from tokentrail.stores import sqlite as sqlite_store


def sqlite_v10_undone() -> list[str]:
    """SQLite: v10's column dropped, the version set to 9."""
    return ["ALTER TABLE sessions DROP COLUMN non_token", "UPDATE schema_version SET version = 9"]


def sqlite_v9_undone() -> list[str]:
    """SQLite: v10's and v9's columns dropped, the v8 `records` view back, the version set to 8."""
    return [
        *sqlite_v10_undone(),
        *(
            f"ALTER TABLE {table} DROP COLUMN non_token"
            for table in ("rollup_hour", "rollup_day", "rollup_prices")
        ),
        "ALTER TABLE costs DROP COLUMN non_token",
        "UPDATE ledger SET extra = CASE WHEN json_remove(extra, '$.nt') = '{}' THEN NULL"
        " ELSE json_remove(extra, '$.nt') END WHERE extra IS NOT NULL",
        "DROP VIEW records",
        sqlite_store._records_view(sqlite_store._TOKEN_FIELDS_V7),
        "UPDATE schema_version SET version = 8",
    ]


def postgres_v6_undone(schema: str) -> list[str]:
    """Postgres: v6's column dropped, the version forgotten (Postgres' v6 is the SQLite ledger's v10)."""
    return [
        f'ALTER TABLE "{schema}".sessions DROP COLUMN non_token',
        f'DELETE FROM "{schema}".schema_migrations WHERE version = 6',
    ]


def postgres_v5_undone(schema: str) -> list[str]:
    """Postgres: v6's and v5's columns dropped, the versions forgotten (Postgres' v5 is the SQLite ledger's
    v9)."""
    return [
        *postgres_v6_undone(schema),
        *(
            f'ALTER TABLE "{schema}".{table} DROP COLUMN non_token'
            for table in ("rollup_hour", "rollup_prices", "records", "costs")
        ),
        f'DELETE FROM "{schema}".schema_migrations WHERE version = 5',
    ]
