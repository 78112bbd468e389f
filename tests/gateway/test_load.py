"""The gateway under load: 1,000 streams at once through one gateway, each recorded exactly once with the
tokens its client saw, the budget's reservations all settled (none leaked)."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.gateway.conftest import gateway_config, recorded, serve
from tokentrail.budgets import Budget
from tokentrail.gateway import Gateway
from tokentrail.testing.mock_llm import MockLLMServer

STREAMS = 1000


async def _openai_stream(client: httpx.AsyncClient, i: int) -> tuple[int, int]:
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": f"request {i} " * (1 + i % 7)}],
    }
    usage = None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage") or usage
    assert usage is not None
    return usage["prompt_tokens"], usage["completion_tokens"]


async def _anthropic_stream(client: httpx.AsyncClient, i: int) -> tuple[int, int]:
    body = {
        "model": "claude-haiku-4-5",
        "stream": True,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": f"request {i} " * (1 + i % 5)}],
    }
    seen = {}
    async with client.stream("POST", "/v1/messages", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == "message_start":
                    seen.update(event["message"]["usage"])
                elif event["type"] == "message_delta":
                    seen.update(event["usage"])
    return seen["input_tokens"], seen["output_tokens"]


async def _all(url: str) -> list[tuple[int, int]]:
    limits = httpx.Limits(max_connections=STREAMS, max_keepalive_connections=STREAMS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        calls = [(_openai_stream if i % 2 else _anthropic_stream)(client, i) for i in range(STREAMS)]
        return await asyncio.gather(*calls)


def test_a_thousand_concurrent_streams_exact_totals_and_no_leaked_reservation(
    mock: MockLLMServer, ledger: str
) -> None:
    budget = Budget(limit_usd="1000", window="monthly", name="all")
    gateway = Gateway(gateway_config(mock.base, ledger, budgets=[budget]))
    done = recorded(gateway, STREAMS)
    with serve(gateway) as running:
        reported = asyncio.run(_all(running.url))
        assert done.wait(120), "not every stream was recorded"
        totals = gateway.tracker.totals()
        records = gateway.tracker.history(limit=None)
        (status,) = gateway.budgets.manager.status()  # type: ignore[union-attr]
        in_flight = gateway.metrics.in_flight

    assert len(mock.requests) == len(records) == totals.calls == STREAMS
    assert all(r.usage.status.value == "complete" for r in records)
    assert totals.input_tokens == sum(i for i, _ in reported)
    assert totals.output_tokens == sum(o for _, o in reported)
    assert sorted((r.usage.input_tokens, r.usage.output_tokens) for r in records) == sorted(reported)
    assert status.reserved_usd == 0  # every reservation settled: none leaked
    assert status.spent_usd == sum(r.cost for r in records) == totals.cost
    assert in_flight == 0
