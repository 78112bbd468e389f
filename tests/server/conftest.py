"""A seeded SQLite ledger (spread over 60 days, two agents, three users, one unpriced model) and apps over it."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

import tokentrail as tt

NOW = datetime.now(timezone.utc)


@dataclass(frozen=True)
class Ledger:
    path: Path
    url: str

    def digest(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def seed(tracker: tt.Tracker) -> None:
    """Calls at known times: most in the last 10 days, a few 40 and 60 days ago, one unpriced model."""
    plan = [
        # (days ago, hours ago, agent, user, model, input, output)
        (0, 1, "researcher", "alice", "gpt-4o-mini", 1200, 300),
        (0, 2, "writer", "bob", "gpt-4o", 800, 900),
        (0, 3, "researcher", "carol", "claude-3-5-haiku-20241022", 5000, 200),
        (1, 0, "writer", "alice", "gpt-4o", 2000, 1000),
        (2, 0, "researcher", "bob", "gpt-4o-mini", 700, 100),
        (3, 0, "writer", "carol", "my-local-model", 100, 100),
        (5, 0, "researcher", "alice", "gpt-4o", 3000, 1500),
        (9, 0, "writer", "bob", "claude-3-5-haiku-20241022", 4000, 800),
        (40, 0, "researcher", "alice", "gpt-4o", 90000, 20000),
        (60, 0, "writer", "carol", "gpt-4o", 50000, 10000),
    ]
    for days, hours, agent, user, model, input_tokens, output_tokens in plan:
        tracker.record(
            tt.Usage(input_tokens, output_tokens),
            model=model,
            agent=agent,
            user=user,
            duration_ms=250.0,
            at=NOW - timedelta(days=days, hours=hours, minutes=5),
        )


@pytest.fixture(scope="session")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    path = tmp_path_factory.mktemp("server") / "ledger.db"
    url = f"sqlite:///{path}"
    writer = tt.Tracker(store=url)
    seed(writer)
    writer.store.close()  # type: ignore[attr-defined]
    yield Ledger(path, url)


@pytest.fixture(scope="session")
def reader(ledger: Ledger) -> tt.Tracker:
    """An ordinary tracker over the same ledger: the figures the API must equal."""
    return tt.Tracker(store=ledger.url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    *args: str, ready_path: str = "/api/totals", headers: dict[str, str] | None = None
) -> Iterator[str]:
    """`tokentrail serve ARGS --port N` (uvicorn) in a subprocess; yields its base URL once it answers."""
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "from tokentrail.cli import main; main()",
        "serve",
        *args,
        "--port",
        str(port),
    ]
    env = {key: value for key, value in os.environ.items() if key != "TOKENTRAIL_TOKEN"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + ready_path, headers=headers, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"tokentrail serve did not start:\n{output}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
