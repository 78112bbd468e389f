"""Fixtures shared across test directories: REAL Postgres and Redis servers, started when they are down
(`pg_ctlcluster … start`, `redis-server --daemonize yes …`); a test skips, loudly, only when a server
truly cannot be reached or started."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

POSTGRES_URL = os.environ.get("TOKENTRAIL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TOKENTRAIL_TEST_REDIS", "redis://127.0.0.1:6379/0")


def postgres_up(url: str = POSTGRES_URL) -> bool:
    """Whether the test server answers a query now."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def postgres_cluster() -> list[str] | None:
    """`pg_ctlcluster` arguments (version, cluster) of the local cluster, None when there is none."""
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not shutil.which("pg_ctlcluster") or not versions:
        return None
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def start_postgres() -> bool:
    """Start the local cluster if it is down; True once it answers."""
    if postgres_up():
        return True
    cluster = postgres_cluster()
    if cluster is None:
        return False
    subprocess.run([*cluster, "start"], check=False, capture_output=True)
    return wait_for(postgres_up, 30)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    pytest.importorskip(
        "psycopg", reason="POSTGRES TESTS SKIPPED: psycopg is not installed (pip install psycopg[binary])"
    )
    pytest.importorskip("psycopg_pool", reason="POSTGRES TESTS SKIPPED: psycopg-pool is not installed")
    if start_postgres():
        return POSTGRES_URL
    pytest.skip(f"POSTGRES TESTS SKIPPED: no Postgres at {POSTGRES_URL} and the cluster could not be started")


def redis_up(url: str = REDIS_URL) -> bool:
    """Whether the test Redis answers a PING now."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_server() -> str:
    pytest.importorskip("redis", reason="REDIS TESTS SKIPPED: redis-py is not installed (pip install redis)")
    if redis_up():
        return REDIS_URL
    if shutil.which("redis-server"):
        subprocess.run(
            [
                *("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379"),
                *("--save", "", "--appendonly", "no"),
            ],
            check=False,
            capture_output=True,
        )
        if wait_for(redis_up, 10):
            return REDIS_URL
    pytest.skip(f"REDIS TESTS SKIPPED: no Redis at {REDIS_URL} and redis-server could not be started")
