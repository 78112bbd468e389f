"""Fixtures shared across test directories: REAL Postgres and Redis servers, started when they are down
(`pg_ctlcluster … start`, `redis-server --daemonize yes …`).

A real component that cannot be reached goes through `skip_or_fail`: on a developer's machine the test
skips loudly (the reason names the component and says SKIPPED); under `CI=true` it FAILS, so CI can never
pass while hiding a missing PostgreSQL, Redis or Chromium.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from types import ModuleType
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

# Prices come from the bundled snapshot, never from a catalog `tokentrail prices update` installed on this
# machine: the run gets an empty cache directory of its own (subprocesses inherit it).
os.environ["TOKENTRAIL_CACHE_DIR"] = tempfile.mkdtemp(prefix="tokentrail-test-cache-")

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = os.environ.get("TOKENTRAIL_TEST_POSTGRES", DEFAULT_POSTGRES_URL)
REDIS_URL = os.environ.get("TOKENTRAIL_TEST_REDIS", DEFAULT_REDIS_URL)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
REDIS_START = (
    "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no"
    " (or run .ci/run, which starts it)"
)


def in_ci() -> bool:
    """Whether this run is CI (`CI=true`, as GitHub Actions, GitLab and most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


# Packages only the separate frameworks env has (they pin openai<3); everywhere else a test dependency
# that cannot be imported is a failure under CI=true, whichever way a test asked for it.
_FRAMEWORKS_ENV_ONLY = {"llama_index", "crewai"}
_importorskip = pytest.importorskip


def _importorskip_or_fail(modname: str, *args: object, **kwargs: object) -> ModuleType:
    """`pytest.importorskip`, except that under CI=true a declared test dependency that is missing fails
    the test instead of skipping it (`make test` installs them all)."""
    try:
        return _importorskip(modname, *args, **kwargs)  # type: ignore[arg-type]
    except pytest.skip.Exception as exc:
        if in_ci() and modname.split(".")[0] not in _FRAMEWORKS_ENV_ONLY:
            pytest.fail(f"{modname} MISSING (CI=true: failing instead of skipping): {exc}", pytrace=False)
        raise


pytest.importorskip = _importorskip_or_fail  # type: ignore[assignment]


def skip_or_fail(component: str, looked: str, start: str) -> NoReturn:
    """A missing real component: a loud skip on a developer's machine, a failure under CI=true.

    `looked` says how it was looked for, `start` how to start or install it.
    """
    if in_ci():
        pytest.fail(
            f"{component} MISSING (CI=true: failing instead of skipping): {looked}. To start it: {start}",
            pytrace=False,
        )
    pytest.skip(
        f"{component} TESTS SKIPPED: {looked}. To start it: {start}. (Under CI=true this fails.)",
        allow_module_level=True,
    )


def require_module(name: str, component: str, install: str) -> ModuleType:
    """Import the client library a real component needs, or `skip_or_fail` naming the component."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip_or_fail(component, f"cannot import {name} ({exc})", install)


def is_local_default(url: str, port: int) -> bool:
    """Whether `url` is the local server these fixtures may start (loopback, default port); any other
    URL is used as given: the fixtures start no server they were not asked to own."""
    parts = urlsplit(url)
    return parts.hostname in LOOPBACK and (parts.port or port) == port


def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


# -- PostgreSQL ---------------------------------------------------------------------------------------------


def postgres_up(url: str = POSTGRES_URL) -> bool:
    """Whether the test server answers a query now."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def postgres_cluster() -> list[str] | None:
    """`pg_ctlcluster` arguments (version, cluster) of the local cluster, None when there is none."""
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not shutil.which("pg_ctlcluster") or not versions:
        return None
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def start_postgres() -> bool:
    """Start the local cluster if it is down; True once it answers."""
    return _start_postgres(POSTGRES_URL) is None


def _start_postgres(url: str) -> str | None:
    """None once Postgres answers at `url` (started if it is the local default); else how it was looked for."""
    if postgres_up(url):
        return None
    looked = f"no answer at {url} (TOKENTRAIL_TEST_POSTGRES)"
    if not is_local_default(url, 5432):
        return f"{looked}; not started: it is not the local default port 5432"
    cluster = postgres_cluster()
    if cluster is None:
        return f"{looked}; no local cluster to start (pg_ctlcluster not on PATH or /etc/postgresql empty)"
    started = subprocess.run([*cluster, "start"], check=False, capture_output=True, text=True)
    if wait_for(lambda: postgres_up(url), 30):
        return None
    output = (started.stderr or started.stdout).strip()[-300:]
    return f"{looked}; `{' '.join([*cluster, 'start'])}` exited {started.returncode} ({output}), no answer in 30 s"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    install = "pip install 'psycopg[binary]' psycopg-pool (the test extra)"
    require_module("psycopg", "POSTGRES", install)
    require_module("psycopg_pool", "POSTGRES", install)
    looked = _start_postgres(POSTGRES_URL)
    if looked is not None:
        skip_or_fail(
            "POSTGRES",
            looked,
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start (or run .ci/run)",
        )
    return POSTGRES_URL


# -- Redis --------------------------------------------------------------------------------------------------


def redis_up(url: str = REDIS_URL) -> bool:
    """Whether the test Redis answers a PING now."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _start_redis(url: str) -> str | None:
    """None once Redis answers at `url` (started if it is the local default); else how it was looked for."""
    if redis_up(url):
        return None
    looked = f"no answer to PING at {url} (TOKENTRAIL_TEST_REDIS)"
    if not is_local_default(url, 6379):
        return f"{looked}; not started: it is not the local default port 6379"
    if not shutil.which("redis-server"):
        return f"{looked}; redis-server is not on PATH"
    command = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379"]
    started = subprocess.run(
        [*command, "--save", "", "--appendonly", "no"], check=False, capture_output=True, text=True
    )
    if wait_for(lambda: redis_up(url), 10):
        return None
    output = (started.stderr or started.stdout).strip()[-300:]
    return f"{looked}; `{' '.join(command)} …` exited {started.returncode} ({output}), no answer in 10 s"


@pytest.fixture(scope="session")
def redis_server() -> str:
    require_module("redis", "REDIS", "pip install 'redis[hiredis]' (the test extra)")
    looked = _start_redis(REDIS_URL)
    if looked is not None:
        skip_or_fail("REDIS", looked, REDIS_START)
    return REDIS_URL
