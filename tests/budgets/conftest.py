"""Budget back-ends for tests: memory, a SQLite file, and REAL Redis and Postgres servers.

Redis and Postgres come from the `redis_server` and `postgres_server` fixtures of tests/conftest.py
(started when they are down; a test skips, loudly, only if a server truly cannot be reached). Each test
gets its own Redis key prefix and Postgres schema, removed afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tokentrail.budgets.backend import BudgetBackend
from tokentrail.budgets.memory import MemoryBackend
from tokentrail.budgets.sqlite import SQLiteBackend

BACKENDS = ("memory", "sqlite", "redis", "redis_pipelined", "postgres", "redis_quota", "sqlite_quota")


class FakeClock:
    """An injectable clock (epoch seconds). Starts in the future: Redis expires keys by these times."""

    def __init__(self, start: float | datetime | None = None) -> None:
        if start is None:
            start = datetime(2031, 3, 4, 12, 0, tzinfo=ZoneInfo("UTC"))
        self.now = start.timestamp() if isinstance(start, datetime) else float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- back-ends ----------------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_backend(redis_server: str) -> Iterator[BudgetBackend]:
    from tokentrail.budgets.redis import RedisBackend

    backend = RedisBackend(redis_server, prefix=unique("tt-test-") + ":")
    yield backend
    backend.drop()
    backend.close()


@pytest.fixture
def redis_pipelined_backend(redis_server: str) -> Iterator[BudgetBackend]:
    """Redis with settlements pipelined: their outcomes (alerts) arrive at the next call or flush."""
    from tokentrail.budgets.redis import RedisBackend

    backend = RedisBackend(redis_server, prefix=unique("tt-test-") + ":", pipeline=True)
    yield backend
    backend.drop()
    backend.close()


@pytest.fixture
def postgres_backend(postgres_server: str) -> Iterator[BudgetBackend]:
    from tokentrail.budgets.postgres import PostgresBackend

    backend = PostgresBackend(postgres_server, schema=unique("tt_test_"))
    yield backend
    backend.drop_schema()
    backend.close()


@pytest.fixture
def redis_quota_backend(redis_pipelined_backend: BudgetBackend) -> BudgetBackend:
    """Room for 8 calls at a time taken from a real Redis (its settlements pipelined)."""
    from tokentrail.budgets.quota import LocalQuota

    return LocalQuota(redis_pipelined_backend, calls=8)


@pytest.fixture
def sqlite_quota_backend(sqlite_backend: BudgetBackend) -> BudgetBackend:
    from tokentrail.budgets.quota import LocalQuota

    return LocalQuota(sqlite_backend, calls=8)


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Iterator[BudgetBackend]:
    backend = SQLiteBackend(tmp_path / "budgets.db")
    yield backend
    backend.close()


def delivered(backend: BudgetBackend) -> None:
    """Wait for settlements a pipelining back-end sent without waiting (their alerts arrive with them)."""
    flush = getattr(backend, "flush", None)
    if flush is not None:
        flush()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> BudgetBackend:
    """Each test using it runs once per back-end."""
    name = request.param
    if name == "memory":
        return MemoryBackend()
    found: BudgetBackend = request.getfixturevalue(f"{name}_backend")
    return found
