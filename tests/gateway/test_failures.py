"""Upstream down, slow or malformed, and clients that leave mid-stream: provider-shaped errors, nothing
recorded for a call that did not happen, `unknown` with its reason for one whose usage cannot be read,
`partial` for one cut short, and the budget room given back."""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import (
    ScriptedUpstream,
    Step,
    closed_port,
    eventually,
    gateway_config,
    recorded,
    serve,
)
from tokentrail.budgets import Budget
from tokentrail.gateway import Gateway

MESSAGES = [{"role": "user", "content": "hello"}]


def test_upstream_down_answers_a_provider_shaped_502(ledger: str) -> None:
    with serve(Gateway(gateway_config(f"http://127.0.0.1:{closed_port()}", ledger))) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        records = running.gateway.tracker.history()

    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "api_error"  # type: ignore[index]
    assert "could not be reached" in caught.value.body["message"]  # type: ignore[index]
    assert records == []


def test_slow_upstream_times_out_as_a_provider_shaped_504(scripted: ScriptedUpstream, ledger: str) -> None:
    scripted.headers_gate = threading.Event()  # never answers until the test is over
    with serve(Gateway(gateway_config(scripted.base, ledger, timeout=0.2))) as running:
        client = anthropic.Anthropic(base_url=running.url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
        records = running.gateway.tracker.history()

    assert caught.value.status_code == 504
    assert caught.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
    assert records == []
    assert len(scripted.requests) == 1


def test_malformed_body_is_passed_on_and_recorded_unknown_with_the_reason(
    scripted: ScriptedUpstream, ledger: str
) -> None:
    scripted.answer_json(b'{"id": "chatcmpl-1", "object": "chat.compl')
    with serve(Gateway(gateway_config(scripted.base, ledger))) as running:
        response = httpx.post(
            running.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}
        )
        (record,) = running.gateway.tracker.history()

    assert response.status_code == 200
    assert response.content == b'{"id": "chatcmpl-1", "object": "chat.compl'
    assert record.usage.status.value == "unknown"
    assert record.usage.reason == "the response body is not JSON"
    assert record.model == "gpt-4o" and record.cost_units is None


def test_client_leaving_mid_stream_records_what_was_seen_and_frees_the_reservation(
    scripted: ScriptedUpstream, ledger: str
) -> None:
    never = threading.Event()
    scripted.steps = [
        Step(
            b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
            b'"role":"assistant","model":"claude-haiku-4-5","content":[],"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
        ),
        Step(b'event: message_stop\ndata: {"type":"message_stop"}\n\n', gate=never),
    ]
    budget = Budget(limit_usd="10", window="monthly", name="all")
    gateway = Gateway(gateway_config(scripted.base, ledger, budgets=[budget]))
    done = recorded(gateway)
    with serve(gateway) as running:
        with httpx.stream(
            "POST",
            running.url + "/v1/messages",
            json={"model": "claude-haiku-4-5", "max_tokens": 500, "stream": True, "messages": MESSAGES},
        ) as response:
            lines = response.iter_lines()  # kept: a dropped iterator closes the connection at once
            assert next(lines) == "event: message_start"
            held = gateway.budgets.manager.status()[0].reserved_usd  # type: ignore[union-attr]
        assert done.wait(30), "the gateway did not record the abandoned stream"
        (record,) = gateway.tracker.history()
        (status,) = gateway.budgets.manager.status()  # type: ignore[union-attr]
        disconnects = gateway.metrics.client_disconnects

    assert held > 0
    assert record.usage.status.value == "partial"
    assert record.usage.input_tokens == 25
    assert status.reserved_usd == 0
    assert status.spent_usd == record.cost  # settled with what was seen: the rest of the hold released
    assert disconnects == 1


def test_a_client_that_closes_after_the_last_event_had_a_complete_call(
    scripted: ScriptedUpstream, ledger: str
) -> None:
    # the openai SDK closes the response as soon as it reads `data: [DONE]` (openai/_streaming.py): the
    # call is complete, whether or not the upstream has ended its body by then (here it never does)
    never = threading.Event()
    base = b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    scripted.steps = [
        Step(
            b"data: " + base + b'"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\n'
        ),
        Step(
            b"data: "
            + base
            + b'"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}'
            b"\n\ndata: [DONE]\n\n"
        ),
        Step(b"\n", gate=never),
    ]
    gateway = Gateway(gateway_config(scripted.base, ledger))
    done = recorded(gateway)
    with serve(gateway) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="k", max_retries=0)
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        assert done.wait(30)
        (record,) = gateway.tracker.history()
        metrics = gateway.metrics

    assert [c.choices[0].delta.content for c in chunks] == [
        "Hi"
    ]  # the usage chunk it did not ask for: hidden
    assert record.usage.status.value == "complete"
    assert (record.usage.input_tokens, record.usage.output_tokens) == (9, 3)
    assert metrics.client_disconnects == 0
    assert metrics.requests[("openai.chat", "openai", 200)] == 1


def test_a_client_leaving_before_the_upstream_answers_closes_the_upstream_request_and_frees_the_hold(
    scripted: ScriptedUpstream, ledger: str
) -> None:
    scripted.headers_gate = threading.Event()  # the upstream is thinking: no status line yet
    budget = Budget(limit_usd="10", window="monthly", name="all")
    gateway = Gateway(gateway_config(scripted.base, ledger, budgets=[budget]))
    body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 500, "messages": MESSAGES}).encode()
    with serve(gateway) as running:
        client = socket.create_connection(("127.0.0.1", running.port))
        client.sendall(
            b"POST /v1/messages HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert eventually(lambda: len(scripted.requests) == 1), "the request was not forwarded"
        held = gateway.budgets.manager.status()[0].reserved_usd  # type: ignore[union-attr]
        client.close()
        assert scripted.hung_up.wait(30), "the gateway kept waiting for an answer nobody will read"
        assert eventually(lambda: gateway.metrics.client_disconnects == 1)
        (status,) = gateway.budgets.manager.status()  # type: ignore[union-attr]
        records = gateway.tracker.history()
        metrics = gateway.metrics

    assert held > 0 and status.reserved_usd == 0 and status.spent_usd == 0
    assert records == []
    assert metrics.in_flight == 0
    assert metrics.requests[("anthropic.messages", "anthropic", 499)] == 1


@pytest.mark.parametrize(
    ("path", "body", "error_type"),
    [
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": MESSAGES}, ("error", "type", "api_error")),
        (
            "/v1/messages",
            {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": MESSAGES},
            ("error", "type", "overloaded_error"),
        ),
    ],
)
def test_requests_above_the_in_flight_limit_are_refused_with_retry_after_not_queued(
    scripted: ScriptedUpstream, ledger: str, path: str, body: dict, error_type: tuple[str, str, str]
) -> None:
    scripted.headers_gate = threading.Event()
    scripted.answer_json(b"{}")
    gateway = Gateway(gateway_config(scripted.base, ledger, max_in_flight=2))
    with serve(gateway) as running:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(httpx.post, running.url + path, json=body, timeout=60) for _ in range(2)]
            assert eventually(lambda: len(scripted.requests) == 2)
            refused = httpx.post(running.url + path, json=body)
            scripted.headers_gate.set()
            answered = [future.result().status_code for future in held]
        after = httpx.post(running.url + path, json=body)  # room again
        metrics = gateway.metrics

    outer, field, kind = error_type
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()[outer][field] == kind
    assert answered == [200, 200] and after.status_code == 200
    assert len(scripted.requests) == 3  # the refused one never reached the upstream
    assert sum(n for (_, reason), n in metrics.refused.items() if reason == "busy") == 1
