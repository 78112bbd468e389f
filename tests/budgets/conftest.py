"""Budget back-ends for tests: memory, a SQLite file, and REAL Redis and Postgres servers.

Redis and Postgres are started when they are down (`redis-server --daemonize yes …`,
`pg_ctlcluster … start`); a test skips, loudly, only if a server truly cannot be reached. Each test gets
its own Redis key prefix and Postgres schema, removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tokentrail.budgets.backend import BudgetBackend
from tokentrail.budgets.memory import MemoryBackend
from tokentrail.budgets.sqlite import SQLiteBackend

REDIS_URL = os.environ.get("TOKENTRAIL_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("TOKENTRAIL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("memory", "sqlite", "redis", "redis_pipelined", "postgres")


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


# -- services ----------------------------------------------------------------------------------------------


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _postgres_up() -> bool:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _wait(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


@pytest.fixture(scope="session")
def redis_server() -> str:
    pytest.importorskip("redis", reason="REDIS TESTS SKIPPED: redis-py is not installed (pip install redis)")
    if _redis_up():
        return REDIS_URL
    if shutil.which("redis-server"):
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=False,
            capture_output=True,
        )
        if _wait(_redis_up, 10):
            return REDIS_URL
    pytest.skip(f"REDIS TESTS SKIPPED: no Redis at {REDIS_URL} and redis-server could not be started")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    pytest.importorskip(
        "psycopg", reason="POSTGRES TESTS SKIPPED: psycopg is not installed (pip install psycopg[binary])"
    )
    pytest.importorskip("psycopg_pool", reason="POSTGRES TESTS SKIPPED: psycopg-pool is not installed")
    if _postgres_up():
        return POSTGRES_URL
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if shutil.which("pg_ctlcluster") and versions:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
            check=False,
            capture_output=True,
        )
        if _wait(_postgres_up, 20):
            return POSTGRES_URL
    pytest.skip(f"POSTGRES TESTS SKIPPED: no Postgres at {POSTGRES_URL} and the cluster could not be started")


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
