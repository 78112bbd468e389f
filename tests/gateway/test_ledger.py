"""The gateway over a Postgres ledger (postgresql://), and that ledger going down while calls keep coming:
the clients are answered as usual, /readyz says the ledger is down, the records go to the spool and are
replayed when the server is back — every call in the ledger exactly once (through a TCP relay we cut)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from tests.conftest import require_module
from tests.gateway.conftest import ENV_KEYS, gateway_config, recorded, serve
from tokentrail.gateway import Gateway
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

require_module("psycopg", "POSTGRES", "pip install 'psycopg[binary]' psycopg-pool (the test extra)")
from tests.stores.test_postgres import Relay, count_rows, relay, schema  # noqa: E402, F401 (fixtures)

CALLS = 100
CLIENT_KEY = "sk-client-own-key-0123456789"


async def _calls(url: str, phase: str) -> list[tuple[int, int]]:
    """CALLS calls at once, half of them streamed; the (input, output) tokens each client was shown."""

    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, int]:
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"{phase} {i} " * (1 + i % 5)}],
        }
        if i % 2 == 0:
            response = await client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200
            usage = response.json()["usage"]
        else:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
            usage = {}
            async with client.stream("POST", "/v1/chat/completions", json=body) as streamed:
                assert streamed.status_code == 200
                async for line in streamed.aiter_lines():
                    if line.startswith("data: {"):
                        usage = json.loads(line[6:]).get("usage") or usage
        return usage["prompt_tokens"], usage["completion_tokens"]

    headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-tokentrail-agent": phase}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        return await asyncio.gather(*(one(client, i) for i in range(CALLS)))


def test_the_ledger_down_during_load_spools_and_loses_or_doubles_nothing(
    mock: MockLLMServer,
    postgres_server: str,
    schema: str,  # noqa: F811 (the store tests' fixtures: a schema dropped after, a relay we can cut)
    relay: Relay,  # noqa: F811
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    separator = "&" if "?" in postgres_server else "?"
    store = (
        f"{relay.url(postgres_server)}{separator}schema={schema}&spool={spool}&flush_interval=0.05&timeout=2"
    )
    gateway = Gateway(gateway_config(mock.base, store))
    reported: list[tuple[int, int]] = []
    with serve(gateway) as running:
        before = recorded(gateway, CALLS)
        reported += asyncio.run(_calls(running.url, "before"))
        assert before.wait(60)
        gateway.tracker.flush()
        ready = httpx.get(running.url + "/readyz", timeout=30)
        relay.cut()

        during = recorded(gateway, CALLS)
        reported += asyncio.run(_calls(running.url, "during"))  # answered as usual
        assert during.wait(60)
        down = httpx.get(running.url + "/readyz", timeout=30)
        gateway.tracker.flush()  # the server is unreachable: to the spool, without raising
        spooled = gateway.tracker.store._spool.spooled  # type: ignore[attr-defined]
        spool_text = b"".join(path.read_bytes() for path in spool.glob("*.jsonl"))
        relay.restore()

        after = recorded(gateway, CALLS)
        reported += asyncio.run(_calls(running.url, "after"))
        assert after.wait(60)
        back = httpx.get(running.url + "/readyz", timeout=30)
    # the gateway closed its ledger on shutdown: the spool replayed, the rest written

    assert (ready.status_code, back.status_code, down.status_code) == (200, 200, 503)
    assert down.json()["checks"]["ledger"].startswith("down (")
    assert spooled >= 1 and b'"during"' in spool_text
    assert list(spool.glob("*.jsonl")) == []
    assert len(mock.requests) == 3 * CALLS
    assert count_rows(postgres_server, schema) == (3 * CALLS, 3 * CALLS)  # none lost, none twice
    ledger = Tracker(f"{postgres_server}{separator}schema={schema}&spool={spool}")
    try:
        by_agent = {row.group["agent"]: row.calls for row in ledger.summary("agent")}
        totals = ledger.totals()
        dump = json.dumps([repr(r) for r in ledger.history(limit=None)])
    finally:
        ledger.close()
    assert by_agent == {"before": CALLS, "during": CALLS, "after": CALLS}
    assert (totals.input_tokens, totals.output_tokens) == tuple(map(sum, zip(*reported, strict=True)))
    for secret in (CLIENT_KEY, *ENV_KEYS.values()):
        assert secret not in dump and secret.encode() not in spool_text
