"""/healthz, /readyz (failing while the budget back-end is down), /metrics, and a graceful shutdown that
lets a running stream finish and flushes the ledger."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import Running, ScriptedUpstream, Step, closed_port, gateway_config, serve
from tokentrail.budgets import Budget
from tokentrail.gateway import Gateway
from tokentrail.tracker import Tracker


def test_health_and_readiness(gateway: Running) -> None:
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gateway.url + "/readyz").json() == {"ready": True, "checks": {"ledger": "ok"}}


def test_metrics_have_latency_histograms_by_route_and_upstream(gateway: Running) -> None:
    for _ in range(3):
        httpx.post(gateway.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": []})
    httpx.post(
        gateway.url + "/v1/messages", json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}
    )
    text = httpx.get(gateway.url + "/metrics").text

    chat = 'route="openai.chat",upstream="openai"'
    for name in ("request_duration_seconds", "upstream_headers_seconds"):
        assert f'tokentrail_gateway_{name}_bucket{{le="+Inf",{chat}}} 3.0' in text
        assert (
            f'tokentrail_gateway_{name}_count{{route="anthropic.messages",upstream="anthropic"}} 1.0' in text
        )
        assert f"tokentrail_gateway_{name}_sum{{{chat}}}" in text


def test_readiness_fails_while_the_budget_back_end_is_down(ledger: str) -> None:
    port = closed_port()
    budget = Budget(limit_usd="1", name="all")
    config = gateway_config(
        "http://127.0.0.1:9", ledger, budgets=[budget], budget_backend=f"redis://127.0.0.1:{port}/0"
    )
    with serve(Gateway(config)) as running:
        response = httpx.get(running.url + "/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["ledger"] == "ok"
    assert response.json()["checks"]["budgets"].startswith("down")


def test_shutdown_lets_a_running_stream_finish_and_flushes_the_ledger(
    scripted: ScriptedUpstream, ledger: str
) -> None:
    release = threading.Event()
    scripted.steps = [
        Step(
            b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}],'
            b'"modelVersion":"gemini-2.5-flash","usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":1,"totalTokenCount":9}}\r\n\r\n'
        ),
        Step(
            b'data: {"candidates":[{"content":{"parts":[{"text":" there"}],"role":"model"},"finishReason":"STOP","index":0}],'
            b'"modelVersion":"gemini-2.5-flash","usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":2,"totalTokenCount":10}}\r\n\r\n',
            gate=release,
        ),
    ]
    running = Running(Gateway(gateway_config(scripted.base, ledger))).start()
    with httpx.stream(
        "POST",
        running.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        json={"contents": [{"role": "user", "parts": [{"text": "hello"}]}]},
    ) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        running.server.should_exit = True  # SIGTERM's effect: stop accepting, finish what runs
        while _accepting(running.port):  # wait until the gateway is shutting down (a condition, not a clock)
            threading.Event().wait(0.01)
        release.set()
        rest = [line for line in lines if line]
    running.stop()

    assert len(rest) == 1 and '"finishReason":"STOP"' in rest[0]
    (record,) = Tracker(ledger).history()  # a fresh reader: the gateway flushed and closed its ledger
    assert (record.usage.input_tokens, record.usage.output_tokens, record.usage.status.value) == (
        8,
        2,
        "complete",
    )


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


_STARTUP = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.gateway.conftest import gateway_config, serve
from tokentrail.budgets import Budget
from tokentrail.gateway import Gateway
from tokentrail.pricing.catalog import default_if_built
from tokentrail.tokens import encodings

budgets = [Budget(limit_usd="10", window="monthly", name="all")] if sys.argv[3] == "budgets" else []
gateway = Gateway(gateway_config("http://127.0.0.1:9", sys.argv[2], budgets=budgets))
before = (default_if_built() is not None, sorted(encodings._encoders))
with serve(gateway):  # started: no request has been made
    after = (default_if_built() is not None, sorted(encodings._encoders))
print(before, after)
"""


@pytest.mark.parametrize(
    ("budgets", "loaded"),
    [("budgets", "(True, ['o200k_base'])"), ("none", "(True, [])")],  # prompts are counted for budgets only
)
def test_the_price_catalog_and_tokenizer_are_loaded_at_start_up_not_by_the_first_request(
    ledger: str, budgets: str, loaded: str
) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", _STARTUP, str(Path(__file__).parents[2]), ledger, budgets],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.strip() == f"(False, []) {loaded}"
