"""Virtual keys shared by gateways on several machines through a Postgres key store (`--keys
postgresql://…?schema=…`), on the REAL test server, each test in a schema of its own: the same behaviour as
the SQLite key file; a key created on one gateway usable at once on another, a revocation in force within
the refresh interval; /readyz failing while the key store is down; two `tokentrail gateway` processes
sharing one key store — keys issued and revoked with the CLI, a key's budget held across both."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from tests.conftest import require_module
from tests.gateway.conftest import gateway_config, serve
from tests.gateway.test_processes import (  # noqa: F401 (shared: a fixture)
    GatewayProcess,
    budget_status,
    race,
    records_in,
    shared,
    start_two,
)
from tokentrail.cli import app
from tokentrail.gateway import Gateway, open_key_store
from tokentrail.gateway._access import GatewayBudgets, KeyRegistry
from tokentrail.gateway.keys import hash_key, key_budget
from tokentrail.testing.mock_llm import MockLLMServer

psycopg = require_module("psycopg", "POSTGRES", "pip install 'psycopg[binary]' psycopg-pool (the test extra)")
from tests.stores.test_postgres import Relay, relay  # noqa: E402, F401 (a fixture)

MESSAGES = [{"role": "user", "content": "hi"}]


def _with_schema(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


@pytest.fixture
def key_schema(postgres_server: str) -> Iterator[str]:
    name = f"tt_keys_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def key_url(postgres_server: str, key_schema: str) -> str:
    return _with_schema(postgres_server, key_schema)


@pytest.fixture(params=["sqlite", "postgres"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "keys.db")
    return str(request.getfixturevalue("key_url"))


def _stored_rows(url: str, schema: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f'SELECT * FROM "{schema}".tt_virtual_keys ORDER BY created_at').fetchall()


# -- the store --------------------------------------------------------------------------------------------


def test_both_key_stores_issue_list_and_revoke_alike(any_store_url: str) -> None:
    store = open_key_store(any_store_url)
    try:
        secret, key = store.create(
            user="ann", team="search", agent="planner", tags=("b", "a"), budget="5usd/day"
        )
        _, other = store.create(user="bob")
        store.ping()
        listed = store.keys()
        revoked = store.revoke(key.id)
        again = store.revoke(key.id)
        live, everything = store.keys(), store.keys(include_revoked=True)
    finally:
        store.close()

    assert key.key_hash == hash_key(secret) and secret.startswith(f"ttk-{key.id}-")
    assert listed == [key, other]
    assert (revoked, again) == (True, False)
    assert live == [other]
    [gone, _] = everything
    assert gone.id == key.id and gone.revoked_at is not None
    assert (gone.user, gone.team, gone.agent, gone.tags, gone.budget) == (
        "ann",
        "search",
        "planner",
        ("b", "a"),
        "5usd/day",
    )


def test_the_postgres_key_store_keeps_only_key_hashes(postgres_server: str, key_schema: str) -> None:
    store = open_key_store(_with_schema(postgres_server, key_schema))
    secret, key = store.create(user="ann")
    store.close()

    rows = _stored_rows(postgres_server, key_schema)
    assert len(rows) == 1
    assert key.key_hash in rows[0]
    assert secret not in repr(rows) and secret.split("-", 2)[2] not in repr(rows)


def test_a_bad_schema_name_is_refused(postgres_server: str) -> None:
    from tokentrail.errors import StoreError

    with pytest.raises(StoreError, match="plain SQL identifier"):
        open_key_store(_with_schema(postgres_server, "x;drop"))


# -- two gateways, one key store ----------------------------------------------------------------------------


def test_a_new_key_is_found_at_once_and_a_revocation_at_the_next_refresh(key_url: str) -> None:
    """Gateways A and B each read the shared store over their own connection; B's clock is injected."""
    now = [1000.0]
    store_a, store_b = open_key_store(key_url), open_key_store(key_url)
    b = KeyRegistry(store_b, GatewayBudgets([], None), refresh_seconds=30, clock=lambda: now[0])
    b.reload()
    try:
        secret, key = store_a.create(user="ann")  # issued on A after B read the keys
        found_at_once = asyncio.run(b.lookup(secret))  # an unknown key re-reads the store
        store_a.revoke(key.id)
        now[0] += 29.5
        before_refresh = asyncio.run(b.lookup(secret))
        now[0] += 0.5
        at_refresh = asyncio.run(b.lookup(secret))
    finally:
        store_a.close()
        store_b.close()

    assert found_at_once == key
    assert before_refresh == key  # still cached: B has not re-read since
    assert at_refresh is None  # refused from B's refresh on


def test_readiness_fails_while_the_postgres_key_store_is_down(
    mock: MockLLMServer,
    ledger: str,
    postgres_server: str,
    key_schema: str,
    relay: Relay,  # noqa: F811
) -> None:
    url = _with_schema(relay.url(postgres_server), key_schema)
    secret, _ = _create_key(url, "--user", "ann")
    gateway = Gateway(gateway_config(mock.base, ledger, keys=url))
    with serve(gateway) as running:
        up = httpx.get(running.url + "/readyz")
        relay.cut()
        down = httpx.get(running.url + "/readyz")
        client = openai.OpenAI(base_url=running.url + "/v1", api_key=secret, max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # read before: still known
        relay.restore()
        back = httpx.get(running.url + "/readyz")

    assert (up.status_code, down.status_code, back.status_code) == (200, 503, 200)
    assert up.json()["checks"] == {"ledger": "ok", "keys": "ok"}
    assert down.json()["checks"] == {"ledger": "ok", "keys": "down (StoreError)"}
    assert back.json()["checks"] == {"ledger": "ok", "keys": "ok"}
    assert len(mock.requests) == 1


# -- the CLI ----------------------------------------------------------------------------------------------------


def _tokentrail(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("tokentrail")
    return subprocess.run(
        [str(command), *arguments], capture_output=True, text=True, timeout=120, env={**os.environ}
    )


def _create_key(url: str, *options: str) -> tuple[str, str]:
    """`tokentrail keys create` (the real command): (the secret, the key id)."""
    created = _tokentrail("keys", "create", "--keys", url, *options)
    assert created.returncode == 0, created.stdout + created.stderr
    secret = created.stdout.strip()
    return secret, secret.split("-")[1]


def test_the_keys_commands_on_a_postgres_store(postgres_server: str, key_schema: str) -> None:
    with_password = postgres_server.replace("postgres@", "postgres:pw-never-shown@", 1)
    url = _with_schema(with_password, key_schema)
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--keys", url, "--user", "ann", "--team", "web"])
    key_id = created.stdout.strip().split("-")[1]
    listed = runner.invoke(app, ["keys", "list", "--keys", url])
    revoked = runner.invoke(app, ["keys", "revoke", key_id, "--keys", url])
    unknown = runner.invoke(app, ["keys", "revoke", key_id, "--keys", url])
    bad_budget = runner.invoke(app, ["keys", "create", "--keys", url, "--budget", "lots"])
    unreachable = runner.invoke(app, ["keys", "list", "--keys", "postgresql://postgres@127.0.0.1:1/test"])

    assert created.exit_code == 0, created.output
    assert listed.exit_code == 0 and key_id in listed.stdout and "ann" in listed.stdout
    assert "postgres:***@" in listed.stdout and "pw-never-shown" not in listed.stdout
    assert (revoked.exit_code, unknown.exit_code) == (0, 1)
    assert bad_budget.exit_code == 1 and "AMOUNT usd/PERIOD" in bad_budget.stdout
    assert unreachable.exit_code == 1 and "Cannot open the virtual keys" in unreachable.stdout
    assert len(_stored_rows(postgres_server, key_schema)) == 1  # the refused budget stored nothing


# -- two `tokentrail gateway` processes -------------------------------------------------------------------------


def test_two_gateway_processes_share_keys_issued_and_revoked_with_the_cli(
    mock: MockLLMServer, tmp_path: Path, key_url: str
) -> None:
    ledgers = (f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}")
    common = ["--upstream", f"openai={mock.base}", "--keys", key_url, "--key-refresh", "0"]
    a, b = start_two(*common, a=("--store", ledgers[0]), b=("--store", ledgers[1]))

    def call(gateway: GatewayProcess, secret: str) -> str:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0)
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            return "ok"
        except openai.AuthenticationError as exc:
            return f"refused {exc.status_code}"

    try:
        secret, key_id = _create_key(key_url, "--user", "ann", "--team", "web")  # while both run
        used = [call(a, secret), call(b, secret)]
        revoked = _tokentrail("keys", "revoke", key_id, "--keys", key_url)
        after = [call(a, secret), call(b, secret)]
    finally:
        output = a.stop() + b.stop()

    records = records_in(*ledgers)
    assert used == ["ok", "ok"]
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    assert after == ["refused 401", "refused 401"]
    assert len(mock.requests) == len(records) == 2
    assert {(r.attribution.user, r.attribution.tags) for r in records} == {
        ("ann", (f"key:{key_id}", "team:web"))
    }
    assert secret not in output


def test_a_key_budget_holds_across_two_gateway_processes(
    mock: MockLLMServer,
    tmp_path: Path,
    key_url: str,
    shared: tuple[str, str, str],  # noqa: F811
) -> None:
    backend, ledger_a, ledger_b = shared
    calls = 16
    # each call: 1 input and 1000 output tokens of gpt-4o ($0.0100025), holding a little more: four fit in
    # the key's $0.05 whichever gateway serves them, a fifth never does
    for _ in range(calls):
        mock.queue(input=1, output=1000)
    secret, _ = _create_key(key_url, "--user", "ann", "--budget", "0.05usd/month")
    common = ["--upstream", f"openai={mock.base}", "--keys", key_url, "--budgets", backend]
    a, b = start_two(*common, a=("--store", ledger_a), b=("--store", ledger_b))
    try:
        outcomes = race(a, b, calls, secret)
    finally:
        a.stop()
        b.stop()

    store = open_key_store(key_url)
    [key] = store.keys()
    store.close()
    budget = key_budget(key)
    assert budget is not None
    status = budget_status(budget, backend)
    records = records_in(ledger_a, ledger_b)
    assert outcomes.count("ok") == len(mock.requests) == len(records) == 4
    assert outcomes.count("refused") == calls - 4
    assert sum(r.cost for r in records) == status.spent_usd <= Decimal("0.05")
    assert status.reserved_usd == 0
