"""Real JavaScript clients through the gateway: the Node `openai` package and the Vercel AI SDK
(`ai` + `@ai-sdk/openai`, whose default model speaks the Responses API), run with the machine's Node
(tests/node, installed by `make node`). Each call reaches the mock upstream once and is recorded once,
with the tokens the JS client itself reports, attributed from X-Tokentrail-* headers or a virtual key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.gateway.conftest import ENV_KEYS, gateway_config, serve
from tests.nodejs import run_node
from tokentrail.cli import app
from tokentrail.gateway import Gateway
from tokentrail.testing.mock_llm import MockLLMServer

CHAT, RESPONSES = "/v1/chat/completions", "/v1/responses"
NODE_OPENAI_CALLS = ("chat", "chat.stream", "chat.stream.unasked", "responses", "responses.stream")
AI_SDK_CALLS = ("generateText", "streamText")
HEADERS = {"X-Tokentrail-Agent": "node-agent", "X-Tokentrail-Session": "s-42", "X-Tokentrail-Tags": "js,ci"}


def _virtual_key(keys: Path) -> str:
    result = CliRunner().invoke(
        app, ["keys", "create", "--keys", str(keys), "--user", "dana", "--team", "web"]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[0]


def _run(script: str, mock: MockLLMServer, ledger: str, tmp_path: Path, *, virtual: bool) -> dict[str, Any]:
    keys = tmp_path / "keys.db"
    api_key = _virtual_key(keys) if virtual else "sk-client-own-key"
    gateway = Gateway(gateway_config(mock.base, ledger, keys=str(keys) if virtual else None))
    with serve(gateway) as running:
        out = run_node(
            script,
            env={
                "GATEWAY_URL": running.url,
                "API_KEY": api_key,
                "TT_HEADERS": json.dumps({} if virtual else HEADERS),
            },
        )
        records = gateway.tracker.history()
    return {"calls": json.loads(out.stdout), "records": records, "api_key": api_key}


def _reported(calls: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(c["input"], c["output"]) for c in calls if "input" in c]


@pytest.mark.parametrize("virtual", [False, True], ids=["headers", "virtual-key"])
def test_node_openai(mock: MockLLMServer, ledger: str, tmp_path: Path, virtual: bool) -> None:
    ran = _run("gateway_openai.mjs", mock, ledger, tmp_path, virtual=virtual)
    calls, records = ran["calls"], ran["records"]

    assert [c["call"] for c in calls] == [*NODE_OPENAI_CALLS]
    assert len(mock.requests) == len(records) == 5
    assert [r["path"] for r in mock.requests] == [CHAT] * 3 + [RESPONSES] * 2
    unasked = calls[2]
    assert unasked["usage"] is None and unasked["chunks"] > 1  # the gateway asked; the client is shown none
    assert mock.requests[2]["body"]["stream_options"] == {"include_usage": True}
    counted = [(r.usage.input_tokens, r.usage.output_tokens) for i, r in enumerate(records) if i != 2]
    assert counted == _reported(calls)
    assert records[2].usage.output_tokens > 0 and records[2].usage.status.value == "complete"
    assert all(r.usage.status.value == "complete" and r.model == "gpt-4o-mini" for r in records)
    _assert_attribution(ran, virtual)


@pytest.mark.parametrize("virtual", [False, True], ids=["headers", "virtual-key"])
def test_vercel_ai_sdk(mock: MockLLMServer, ledger: str, tmp_path: Path, virtual: bool) -> None:
    ran = _run("gateway_vercel_ai.mjs", mock, ledger, tmp_path, virtual=virtual)
    calls, records = ran["calls"], ran["records"]

    assert [c["call"] for c in calls] == [f"{api}.{f}" for api in ("responses", "chat") for f in AI_SDK_CALLS]
    assert all(c["text"] for c in calls)
    # @ai-sdk/openai's default model speaks the Responses API; `openai.chat(…)` Chat Completions
    assert [r["path"] for r in mock.requests] == [RESPONSES] * 2 + [CHAT] * 2
    assert len(records) == 4
    assert [(r.usage.input_tokens, r.usage.output_tokens) for r in records] == _reported(calls)
    assert all(r.usage.status.value == "complete" and r.cost_units for r in records)
    _assert_attribution(ran, virtual)


def _assert_attribution(ran: dict[str, Any], virtual: bool) -> None:
    records = ran["records"]
    if virtual:
        key_id = ran["api_key"].split("-")[1]
        assert all(r.attribution.user == "dana" for r in records)
        assert all(r.attribution.tags == (f"key:{key_id}", "team:web") for r in records)
    else:
        assert all(
            (r.attribution.agent, r.attribution.session, r.attribution.tags)
            == ("node-agent", "s-42", ("ci", "js"))
            for r in records
        )


def test_a_virtual_key_never_reaches_the_upstream_from_node(
    mock: MockLLMServer, ledger: str, tmp_path: Path
) -> None:
    ran = _run("gateway_openai.mjs", mock, ledger, tmp_path, virtual=True)

    real = "Bearer " + ENV_KEYS["TOKENTRAIL_UPSTREAM_OPENAI_KEY"]
    assert [r["headers"]["authorization"] for r in mock.requests] == [real] * 5
    assert all(ran["api_key"] not in json.dumps(r["headers"]) for r in mock.requests)
