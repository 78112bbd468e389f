"""Virtual keys and budgets at the gateway: a key stands for attribution and its own budget, the real
provider key never reaches the ledger, the logs or /metrics, and budgets refuse a call before it is
forwarded (HTTP 429 the SDKs raise as RateLimitError), across gateways sharing a budget back-end."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from typer.testing import CliRunner

from tests.gateway.conftest import ENV_KEYS, gateway_config, serve
from tokentrail.budgets import Budget, open_backend
from tokentrail.cli import app
from tokentrail.gateway import Gateway
from tokentrail.testing.mock_llm import MockLLMServer

MESSAGES = [{"role": "user", "content": "hello"}]


def _create_key(keys: Path, *options: str) -> str:
    result = CliRunner().invoke(app, ["keys", "create", "--keys", str(keys), *options])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[0]
    assert secret.startswith("ttk-")
    return secret


def test_a_virtual_key_is_swapped_for_the_real_key_and_attributes_its_calls(
    mock: MockLLMServer, ledger: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = tmp_path / "keys.db"
    secret = _create_key(keys, "--user", "alice", "--team", "search", "--budget", "50usd/month")
    caplog.set_level(logging.DEBUG)
    gateway = Gateway(gateway_config(mock.base, ledger, keys=str(keys)))
    with serve(gateway) as running:
        openai.OpenAI(base_url=running.url + "/v1", api_key=secret, max_retries=0).chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"X-Tokentrail-Agent": "planner"}
        )
        anthropic.Anthropic(base_url=running.url, api_key=secret, max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=20, messages=MESSAGES
        )
        metrics = httpx.get(running.url + "/metrics").text
        records = gateway.tracker.history()
    key_id = secret.split("-")[1]

    assert (
        mock.requests[0]["headers"]["authorization"] == "Bearer " + ENV_KEYS["TOKENTRAIL_UPSTREAM_OPENAI_KEY"]
    )
    anthropic_auth = mock.requests[1][
        "headers"
    ]  # this SDK version sends Authorization: Bearer, older x-api-key
    sent = anthropic_auth.get("x-api-key") or anthropic_auth["authorization"].removeprefix("Bearer ")
    assert sent == ENV_KEYS["TOKENTRAIL_UPSTREAM_ANTHROPIC_KEY"]
    assert all(secret not in str(r["headers"]) for r in mock.requests)
    assert [(r.attribution.user, r.attribution.agent) for r in records] == [
        ("alice", "planner"),
        ("alice", None),
    ]
    assert all(r.attribution.tags == (f"key:{key_id}", "team:search") for r in records)
    secrets = [secret, *ENV_KEYS.values()]
    stored = Path(ledger.removeprefix("sqlite:///")).read_bytes() + keys.read_bytes()
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for text in secrets:
        assert text.encode() not in stored
        assert text not in logged
        assert text not in metrics
    assert (
        'tokentrail_gateway_requests_total{route="openai.chat",status="200",upstream="openai"} 1.0' in metrics
    )


def test_an_unknown_key_is_refused_in_the_provider_shape(
    mock: MockLLMServer, ledger: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.db"
    _create_key(keys, "--user", "bob")
    with serve(Gateway(gateway_config(mock.base, ledger, keys=str(keys)))) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="ttk-00000000-forged", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    assert mock.requests == []


def test_a_key_over_its_budget_is_refused_before_forwarding_with_retry_after(
    mock: MockLLMServer, ledger: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.db"
    secret = _create_key(keys, "--user", "carol", "--budget", "0.001usd/month")
    with serve(Gateway(gateway_config(mock.base, ledger, keys=str(keys)))) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.RateLimitError) as caught:  # worst case: 1000 output tokens ≈ $0.01
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1000)
        claude = anthropic.Anthropic(base_url=running.url, api_key=secret, max_retries=0)
        with pytest.raises(anthropic.RateLimitError):
            claude.messages.create(model="claude-sonnet-4-5", max_tokens=1000, messages=MESSAGES)

    assert mock.requests == []
    headers = caught.value.response.headers
    assert int(headers["retry-after"]) > 0
    assert headers["x-should-retry"] == "false"  # the month does not reset within the SDK's retry window
    assert caught.value.code == "budget_exceeded"


def test_an_anthropic_system_prompt_given_as_blocks_counts_toward_the_reservation(
    mock: MockLLMServer, ledger: str
) -> None:
    budget = Budget(limit_tokens=1000, window="monthly", name="tokens")
    system = [{"type": "text", "text": "Answer in the style of a ship's log. " * 60}]  # ≈ 600 tokens
    with serve(Gateway(gateway_config(mock.base, ledger, budgets=[budget]))) as running:
        client = anthropic.Anthropic(base_url=running.url, api_key="k", max_retries=0)
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=10, system=system[0]["text"][:40], messages=MESSAGES
        )
        with pytest.raises(anthropic.RateLimitError):  # ≈ 600 + 600 held: over 1000 tokens
            client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=10,
                system=system * 2,
                messages=MESSAGES,  # type: ignore[arg-type]
            )

    assert len(mock.requests) == 1


@pytest.fixture(params=["sqlite", "redis"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'budgets.db'}"
    base = request.getfixturevalue("redis_server")
    url = f"{base}?prefix=tt-gateway-test-{uuid.uuid4().hex}:"
    request.addfinalizer(lambda: open_backend(url).drop())  # type: ignore[attr-defined]
    return url


def test_two_gateways_sharing_a_budget_back_end_never_pass_the_limit(
    mock: MockLLMServer, tmp_path: Path, shared_backend: str
) -> None:
    # each call costs $0.0125 (gpt-4o: 1000 in at $2.50/M, 1000 out at $10/M) and reserves ≈ $0.01 of output:
    # four calls fit in $0.05, whichever gateway makes them; the fifth and sixth are refused on both
    limit = Budget(limit_usd="0.05", window="monthly", name="team")
    for _ in range(6):
        mock.queue(input=1000, output=1000)
    first = Gateway(
        gateway_config(
            mock.base, f"sqlite:///{tmp_path / 'a.db'}", budgets=[limit], budget_backend=shared_backend
        )
    )
    second = Gateway(
        gateway_config(
            mock.base, f"sqlite:///{tmp_path / 'b.db'}", budgets=[limit], budget_backend=shared_backend
        )
    )
    outcomes = []
    with serve(first) as a, serve(second) as b:
        for running in (a, b, a, b, a, b):
            client = openai.OpenAI(base_url=running.url + "/v1", api_key="k", max_retries=0)
            try:
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1000)
                outcomes.append("ok")
            except openai.RateLimitError:
                outcomes.append("refused")
        records = first.tracker.history() + second.tracker.history()
        (status,) = first.budgets.manager.status()  # type: ignore[union-attr]

    assert outcomes == ["ok", "ok", "ok", "ok", "refused", "refused"]
    assert len(mock.requests) == len(records) == 4
    assert sum(r.cost for r in records) == status.spent_usd <= status.limit_usd
    assert status.reserved_usd == 0
