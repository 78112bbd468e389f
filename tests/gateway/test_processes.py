"""Two real `tokentrail gateway` processes racing one hard budget kept in a shared back-end (Postgres in
its own schema, Redis under its own key prefix): many calls at once through both, and the spend never
passes the limit. The Postgres run also shares one postgresql:// ledger between the two processes; one
process listens beyond loopback, which it may because it has a gateway token."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import wait_for
from tests.gateway.conftest import ENV_KEYS, closed_port
from tokentrail._record import Record
from tokentrail.budgets import Budget, BudgetManager, BudgetStatus, open_backend
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

TOKEN = "race-token-0123456789abcdef"
LIMIT = Decimal("0.05")
CALLS = 24


class GatewayProcess:
    """`tokentrail gateway …` as a child process, on its own port."""

    def __init__(self, *options: str, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.port = closed_port() if port is None else port
        command = Path(sys.executable).with_name("tokentrail")
        env = {**os.environ, **ENV_KEYS, "TOKENTRAIL_GATEWAY_TOKEN": TOKEN}
        # the journal of held spans beside a postgresql:// ledger: in the test session's cache, not ~/.local
        env.setdefault("TOKENTRAIL_SPOOL_DIR", os.path.join(os.environ["TOKENTRAIL_CACHE_DIR"], "spool"))
        self.process = subprocess.Popen(
            [str(command), "gateway", "--host", host, "--port", str(self.port), *options],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        if not wait_for(self._up, 60):
            self.stop()
            raise AssertionError(f"the gateway did not start:\n{self.output}")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the gateway exited:\n{self.process.communicate()[0].decode()}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown at all (nothing flushed, nothing recorded at exit)."""
        self.process.kill()
        self.output = self.process.communicate(timeout=60)[0].decode()

    def stop(self) -> str:
        """SIGTERM (a graceful shutdown that flushes the ledger); what it printed."""
        self.process.terminate()
        self.output = self.process.communicate(timeout=60)[0].decode()
        return self.output


@pytest.fixture(params=["postgres", "redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(budget back-end URL, ledger URL of process a, of process b)."""
    if request.param == "postgres":
        base = request.getfixturevalue("postgres_server")
        separator = "&" if "?" in base else "?"
        schema = f"tt_gw_{uuid.uuid4().hex[:12]}"
        ledger = f"{base}{separator}schema={schema}_ledger&spool={tmp_path / 'spool'}"
        backend = f"{base}{separator}schema={schema}"
        yield backend, ledger, ledger
        open_backend(backend).drop_schema()  # type: ignore[attr-defined]
        import psycopg

        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}_ledger" CASCADE')
        return
    base = request.getfixturevalue("redis_server")
    backend = f"{base}?prefix=tt-gw-race-{uuid.uuid4().hex}:"
    yield backend, f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    open_backend(backend).drop()  # type: ignore[attr-defined]


def start_two(
    *common: str, a: tuple[str, ...] = (), b: tuple[str, ...] = (), a_host: str = "127.0.0.1"
) -> tuple[GatewayProcess, GatewayProcess]:
    """Two gateway processes with the `common` options and their own (`a`, `b`); the first stopped when
    the second cannot start."""
    first = GatewayProcess(*common, *a, host=a_host)
    try:
        return first, GatewayProcess(*common, *b)
    except BaseException:
        first.stop()
        raise


def race(a: GatewayProcess, b: GatewayProcess, calls: int, api_key: str, **headers: str) -> list[str]:
    """`calls` gpt-4o calls (max_tokens=1000) at once, alternately through `a` and `b`: "ok" or "refused"
    (429) each."""

    def call(i: int) -> str:
        client = openai.OpenAI(
            base_url=(a if i % 2 else b).url + "/v1", api_key=api_key, max_retries=0, default_headers=headers
        )
        try:
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=1000
            )
            return "ok"
        except openai.RateLimitError:
            return "refused"

    with ThreadPoolExecutor(max_workers=calls) as pool:
        return list(pool.map(call, range(calls)))


def budget_status(budget: Budget, backend: str) -> BudgetStatus:
    """`budget`'s status in the shared back-end, read by a manager of its own."""
    manager = BudgetManager([budget], open_backend(backend))
    try:
        (status,) = manager.status()
    finally:
        manager.close()
    return status


def records_in(*ledgers: str) -> list[Record]:
    """Every record of these ledgers (each read once)."""
    records: list[Record] = []
    for url in dict.fromkeys(ledgers):
        ledger = Tracker(url)
        try:
            records += ledger.history(limit=None)
        finally:
            ledger.close()
    return records


def test_two_gateway_processes_racing_one_hard_budget_never_pass_the_limit(
    mock: MockLLMServer, tmp_path: Path, shared: tuple[str, str, str]
) -> None:
    backend, ledger_a, ledger_b = shared
    config = tmp_path / "budgets.toml"
    config.write_text(f'[[budgets]]\nname = "team"\nlimit_usd = "{LIMIT}"\nwindow = "monthly"\n')
    # each call: 1 input token and 1000 output tokens of gpt-4o ($0.0100025); it holds a little more (the
    # counted prompt): four fit in $0.05 whichever gateway serves them, a fifth never does
    for _ in range(CALLS):
        mock.queue(input=1, output=1000)
    common = ["--upstream", f"openai={mock.base}", "--budgets", backend, "--budget-config", str(config)]
    a, b = start_two(*common, a=("--store", ledger_a), b=("--store", ledger_b), a_host="0.0.0.0")
    try:
        outcomes = race(a, b, CALLS, "sk-client-own", **{"X-Tokentrail-Token": TOKEN})
        metrics = httpx.get(a.url + "/metrics").text + httpx.get(b.url + "/metrics").text
    finally:
        output = a.stop() + b.stop()

    status = budget_status(Budget(limit_usd=LIMIT, window="monthly", name="team"), backend)
    records = records_in(ledger_a, ledger_b)

    assert outcomes.count("ok") == len(mock.requests) == len(records) == 4
    assert outcomes.count("refused") == CALLS - 4
    assert sum(r.cost for r in records) == status.spent_usd <= LIMIT
    assert status.reserved_usd == 0
    for secret in (TOKEN, *ENV_KEYS.values()):
        assert secret not in output and secret not in metrics
        assert secret not in "".join(map(repr, records))


def test_the_start_up_line_hides_the_ledger_password(
    mock: MockLLMServer, postgres_server: str, tmp_path: Path
) -> None:
    """`tokentrail gateway --store postgresql://user:PASSWORD@…` prints the ledger it writes to with
    `***` for the password (trust auth here, so the password is accepted and ignored)."""
    import psycopg

    schema = f"tt_gw_{uuid.uuid4().hex[:12]}"
    with_password = postgres_server.replace("postgres@", "postgres:pw-never-printed@", 1)
    separator = "&" if "?" in with_password else "?"
    ledger = f"{with_password}{separator}schema={schema}&spool={tmp_path / 'spool'}"
    try:
        output = GatewayProcess("--upstream", f"openai={mock.base}", "--store", ledger).stop()
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    printed = "".join(output.split())  # rich wraps long lines
    assert "ledgerpostgresql://postgres:***@" in printed
    assert "pw-never-printed" not in printed
