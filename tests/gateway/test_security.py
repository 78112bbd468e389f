"""What the gateway refuses before anything is forwarded: bodies over --max-body (413), X-Tokentrail-*
header values that could inject anything (CR/LF, control characters, non-ASCII, overlong: 400), requests
without a virtual key or the gateway token when one is required (401), and a non-loopback bind without
--require-key or --token. Nothing refused reaches the upstream or the ledger; the gateway token, like the
provider keys, is never forwarded, recorded, logged or shown in /metrics."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from tests.gateway.conftest import ENV_KEYS, Running, gateway_config, serve
from tokentrail.cli import app
from tokentrail.gateway import Gateway
from tokentrail.testing.mock_llm import MockLLMServer

MESSAGES = [{"role": "user", "content": "hello"}]
TOKEN = "gw-token-0123456789abcdef"


def _raw_request(running: Running, head: bytes, body: bytes) -> bytes:
    """Send bytes as they are (no client library would send a malformed header); the status line back."""
    with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
        sock.sendall(head + b"content-length: %d\r\n\r\n" % len(body) + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_a_body_over_the_limit_is_refused_with_413_and_not_forwarded(
    mock: MockLLMServer, ledger: str
) -> None:
    with serve(Gateway(gateway_config(mock.base, ledger, max_body_bytes=4096))) as running:
        big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 5000}]}
        sized = httpx.post(running.url + "/v1/chat/completions", json=big)
        chunked = httpx.post(  # no content-length: the limit holds while the body streams in
            running.url + "/v1/messages",
            content=iter([b'{"model": "claude-haiku-4-5", "messages": [', b" " * 3000, b" " * 3000, b"]}"]),
        )
        small = httpx.post(
            running.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}
        )
        records = running.gateway.tracker.history()

    assert sized.status_code == 413
    assert sized.json()["error"]["message"] == "the request body is over 4096 bytes"
    assert chunked.status_code == 413 and chunked.json()["error"]["type"] == "request_too_large"
    assert small.status_code == 200
    assert len(mock.requests) == len(records) == 1


@pytest.mark.parametrize("http", ["h11", "httptools"])  # uvicorn's parsers: without and with the extra
@pytest.mark.parametrize(
    ("value", "refused_by"),
    [
        (b"planner\rX-Injected: 1", "server"),  # a bare CR: both parsers refuse the request
        (b"planner\x00", "server"),
        (b"planner\x7f", "gateway or httptools"),  # DEL: h11 lets it through, httptools refuses it
        ("pl\u00e4nner".encode(), "gateway"),  # UTF-8 bytes: not ASCII
        (b"\xe4", "gateway"),  # a Latin-1 byte
        (b"p" * 257, "gateway"),
        (b"a\tb", "gateway"),  # a tab is a legal header byte, but no attribution value
    ],
)
def test_header_injection_is_refused(
    mock: MockLLMServer, ledger: str, value: bytes, refused_by: str, http: str
) -> None:
    pytest.importorskip(http)
    by_gateway = refused_by == "gateway" or (refused_by == "gateway or httptools" and http == "h11")
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
        b"x-tokentrail-agent: " + value + b"\r\n"
    )
    with serve(Gateway(gateway_config(mock.base, ledger)), http=http) as running:
        status = _raw_request(running, head, body)
        records = running.gateway.tracker.history()
        refused = running.gateway.metrics.refused

    assert status.startswith(b"HTTP/1.1 400"), status
    assert mock.requests == [] and records == []
    assert refused[("openai", "bad_header")] == (1 if by_gateway else 0)


def test_a_printable_ascii_value_at_the_limit_is_taken(gateway: Running, mock: MockLLMServer) -> None:
    value = "a-Z_0.9 ,;:/" + "x" * 244
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, extra_headers={"X-Tokentrail-Agent": value}
    )

    (record,) = gateway.gateway.tracker.history()
    assert record.attribution.agent == value and len(value) == 256


def test_the_gateway_token_admits_clients_without_a_virtual_key(
    mock: MockLLMServer, ledger: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys = tmp_path / "keys.db"
    created = CliRunner().invoke(app, ["keys", "create", "--keys", str(keys), "--user", "erin"])
    secret = created.stdout.strip().splitlines()[0]
    gateway = Gateway(gateway_config(mock.base, ledger, token=TOKEN, keys=str(keys)))
    base = {"base_url": "", "api_key": "sk-client-own", "max_retries": 0}
    with serve(gateway) as running:
        base["base_url"] = running.url + "/v1"
        with pytest.raises(openai.AuthenticationError) as missing:
            openai.OpenAI(**base).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError) as wrong:
            openai.OpenAI(
                **base, default_headers={"X-Tokentrail-Token": TOKEN[:-1] + "x"}
            ).chat.completions.create(  # type: ignore[arg-type]
                model="gpt-4o", messages=MESSAGES
            )
        with_token = openai.OpenAI(**base, default_headers={"X-Tokentrail-Token": TOKEN})  # type: ignore[arg-type]
        with_token.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        keyed = openai.OpenAI(base_url=running.url + "/v1", api_key=secret, max_retries=0)
        keyed.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # a virtual key needs no token
        metrics = httpx.get(running.url + "/metrics").text
        records = gateway.tracker.history()

    assert "requires a virtual key or its token (X-Tokentrail-Token)" in missing.value.message
    assert "invalid gateway token" in wrong.value.message
    assert len(mock.requests) == len(records) == 2
    assert mock.requests[0]["headers"]["authorization"] == "Bearer sk-client-own"  # its own key, unchanged
    assert (
        mock.requests[1]["headers"]["authorization"] == "Bearer " + ENV_KEYS["TOKENTRAIL_UPSTREAM_OPENAI_KEY"]
    )
    assert all("x-tokentrail-token" not in r["headers"] for r in mock.requests)
    assert [r.attribution.user for r in records] == [None, "erin"]
    assert 'tokentrail_gateway_refused_total{reason="missing_key",upstream="openai"} 1.0' in metrics
    assert 'tokentrail_gateway_refused_total{reason="invalid_token",upstream="openai"} 1.0' in metrics
    stored = Path(ledger.removeprefix("sqlite:///")).read_bytes() + keys.read_bytes()
    for text in (TOKEN, *ENV_KEYS.values()):
        assert text.encode() not in stored
        assert text not in caplog.text and text not in metrics
    assert TOKEN not in repr(gateway.config)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--host", "0.0.0.0"], "refusing to listen on '0.0.0.0' without --require-key or --token"),
        (["--host", "192.0.2.1", "--token", "short"], "--token must be at least 16 characters"),
        (["--host", "::", "--token", ""], "--token must be at least 16 characters"),
    ],
)
def test_a_non_loopback_bind_needs_virtual_keys_or_a_token(options: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["gateway", "--upstream", "openai=http://127.0.0.1:9", *options])

    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
