"""Token auth: loopback by default, no exposed bind without a token, every request checked."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.server.conftest import Ledger, running_server
from tokentrail.cli import app as cli_app
from tokentrail.server import BindRefused, check_bind, create_app, is_loopback

TOKEN = "s3cret-token"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.53"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
def test_non_loopback_bind_without_token_is_refused(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(BindRefused):
        check_bind(host, None)
    check_bind(host, TOKEN)


def test_serve_command_refuses_an_exposed_bind_without_token(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKENTRAIL_TOKEN", raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "--store", ledger.url, "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to listen" in result.output


@pytest.fixture
def guarded(ledger: Ledger) -> TestClient:
    return TestClient(create_app(ledger.url, token=TOKEN))


@pytest.mark.parametrize("path", ["/", "/api/summary", "/api/records", "/metrics", "/openapi.json"])
def test_request_without_token_is_401(guarded: TestClient, path: str) -> None:
    response = guarded.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_wrong_token_is_401(guarded: TestClient) -> None:
    assert guarded.get("/api/totals", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert guarded.get("/api/totals", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert guarded.get("/api/totals", params={"token": "nope"}).status_code == 401
    guarded.cookies.set("tokentrail_session", "forged")
    assert guarded.get("/api/totals").status_code == 401


def test_right_bearer_token_is_200(guarded: TestClient) -> None:
    response = guarded.get("/api/totals", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.json()["totals"]["calls"] == 10


def test_query_token_sets_a_cookie_for_the_next_requests(guarded: TestClient) -> None:
    first = guarded.get("/", params={"token": TOKEN})
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert guarded.get("/api/totals").status_code == 200  # the client kept the cookie


def test_served_metrics_only_checks_the_token_over_real_http(ledger: Ledger) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    args = ("--store", ledger.url, "--metrics-only", "--token", TOKEN)
    with running_server(*args, ready_path="/metrics", headers=bearer) as base:
        assert httpx.get(f"{base}/metrics").status_code == 401
        assert httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        served = httpx.get(f"{base}/metrics", headers=bearer)
        assert served.status_code == 200 and "tokentrail_requests" in served.text
        assert httpx.get(f"{base}/api/totals", headers=bearer).status_code == 404
