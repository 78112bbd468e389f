"""The gateway's pure parts: routes, upstream URLs, the usage chunk a client did not ask for, the body
edit that asks for it, budget specs of virtual keys."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest

from tokentrail.adapters._body_tap import _event_end
from tokentrail.adapters._instrument_call import _estimate_input
from tokentrail.adapters.openai import ChatStream
from tokentrail.budgets import BudgetConfigError
from tokentrail.gateway._app import _ask_usage
from tokentrail.gateway._events import (
    DeferredStream,
    EventSplitter,
    _array_elements,
    strip_usage,
    strip_usage_all,
)
from tokentrail.gateway._metrics import BUCKETS, Histogram
from tokentrail.gateway._routes import CHAT, MESSAGES, match
from tokentrail.gateway._upstream import forward_headers, parse_upstream, presented_key, target_url
from tokentrail.gateway.keys import parse_budget_spec


def test_routes_by_path_and_by_upstream_prefix() -> None:
    assert match("/v1/chat/completions").route.name == "openai.chat"  # type: ignore[union-attr]
    found = match("/v1beta/models/gemini-2.5-flash:streamGenerateContent")
    assert found is not None and (found.route.name, found.model) == ("gemini.stream", "gemini-2.5-flash")
    prefixed = match("/groq/v1/chat/completions")
    assert prefixed is not None and (prefixed.upstream, prefixed.path) == ("groq", "/v1/chat/completions")
    assert match("/v1/files") is None and match("/groq/v1/files") is None


def test_upstream_urls_do_not_double_the_version_segment() -> None:
    plain = parse_upstream("openai=https://api.openai.com", {})
    versioned = parse_upstream("together=https://api.together.xyz/v1/", {})
    assert target_url(plain, "/v1/chat/completions", b"") == "https://api.openai.com/v1/chat/completions"
    assert (
        target_url(versioned, "/v1/chat/completions", b"a=1")
        == "https://api.together.xyz/v1/chat/completions?a=1"
    )
    assert (versioned.api, versioned.provider) == ("openai", "together")
    assert parse_upstream("gemini=https://g.example", {}).api == "gemini"
    with pytest.raises(ValueError):
        parse_upstream("openai=ftp://x", {})


def test_the_provider_key_is_hidden_from_repr() -> None:
    upstream = parse_upstream(
        "openai=https://api.openai.com", {"TOKENTRAIL_UPSTREAM_OPENAI_KEY": "sk-secret"}
    )
    assert upstream.key == "sk-secret" and "sk-secret" not in repr(upstream)


def test_virtual_key_swapped_and_our_headers_dropped() -> None:
    headers = [
        (b"authorization", b"Bearer ttk-ab-secret"),
        (b"x-tokentrail-user", b"u"),
        (b"content-length", b"10"),
        (b"content-type", b"application/json"),
    ]
    assert presented_key(headers, b"") == "ttk-ab-secret"
    assert presented_key([], b"alt=sse&key=ttk-ab-secret") == "ttk-ab-secret"
    assert forward_headers(headers, "ttk-ab-secret", "sk-real") == [
        ("authorization", "Bearer sk-real"),
        ("content-type", "application/json"),
        ("accept-encoding", "identity"),
    ]


def test_usage_chunk_dropped_and_null_usage_taken_out() -> None:
    assert strip_usage(b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n') is None
    assert strip_usage(b'data: {"choices": [], "usage": {"prompt_tokens": 1}}\n\n') is None
    assert (
        strip_usage(b'data: {"choices":[{"index":0}],"usage":null}\n\n')
        == b'data: {"choices":[{"index":0}]}\n\n'
    )
    assert strip_usage(b"data: [DONE]\n\n") == b"data: [DONE]\n\n"


def test_events_split_across_chunks() -> None:
    splitter = EventSplitter()
    assert splitter.split(b"data: 1\n\ndata: ") == [b"data: 1\n\n"]
    assert splitter.split(b"2\r\n\r\n") == [b"data: 2\r\n\r\n"]
    assert splitter.rest() == b""


def _events_one_at_a_time(body: bytes) -> list[bytes]:
    """The events of `body` cut one by one, as the in-process body tap cuts them."""
    events, start = [], 0
    while True:
        end, width = _event_end(body, start)
        if end < 0:
            return events
        events.append(body[start : end + width])
        start = end + width


def test_events_split_where_each_one_ends_whatever_the_chunking() -> None:
    mixed = (
        b"data: 1\n\ndata: 2\r\n\r\n: comment\n\nevent: x\r\ndata: 3\r\n\r\ndata: 4\n\n"
        b"data: \r\n\n5\n\ndata: 6\r\n\r\r\n\r\ndata: 7\n\n\n\ndata: cut"
    )
    expected = _events_one_at_a_time(mixed)
    assert expected[5:8] == [b"data: \r\n\n", b"5\n\n", b"data: 6\r\n\r\r\n\r\n"] and len(expected) == 10
    lf_only = b"data: 1\n\n: c\n\nevent: x\ndata: 2\n\n\n\n\ndata: 3\n\ndata: cut"
    assert _events_one_at_a_time(lf_only)[3:] == [b"\n\n", b"\ndata: 3\n\n"]
    for body in (mixed, lf_only):
        expected = _events_one_at_a_time(body)
        for size in range(1, len(body) + 1):
            splitter = EventSplitter()
            chunks = (body[start : start + size] for start in range(0, len(body), size))
            assert [event for chunk in chunks for event in splitter.split(chunk)] == expected, size
            assert splitter.rest() == b"data: cut"


def test_usage_taken_out_of_a_chunk_of_events_as_out_of_each() -> None:
    events = [
        b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\n\n',
        b'data: {"choices": [{"delta": {}}], "usage": null}\n\n',
        b'data: {"usage":null,"choices":[]}\n\n',
        b'data: {"usage" : null}\n\n',  # null, but no field separator to take out with it: kept as is
        b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n',
        b'data: {"choices":[{"delta":{"x":{"a":1,"usage":null}}}],"usage":null}\n\n',  # only the first
        b"data: [DONE]\n\n",
    ]
    assert strip_usage_all(events) == (
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
        b'data: {"choices": [{"delta": {}}]}\n\n'
        b'data: {"choices":[]}\n\n'
        b'data: {"usage" : null}\n\n'
        b'data: {"choices":[{"delta":{"x":{"a":1}}}],"usage":null}\n\n'
        b"data: [DONE]\n\n"
    )
    assert strip_usage_all(events) == b"".join(e for e in map(strip_usage, events) if e is not None)


def test_a_stream_keeps_its_first_and_usage_events_up_to_its_last_one() -> None:
    stream = DeferredStream(ChatStream("openai"))
    first = b'data: {"model":"gpt-4o","choices":[],"usage":null}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n'
    nulls = [b'data: {"choices":[],"usage":null}\n\n', b'data: {"choices":[], "usage" : null}\n\n']
    done = b"data: [DONE]\n\n"
    assert stream.take_all([first, *nulls], CHAT.last_event) is False
    assert stream.take_all([usage, done, b"data: after\n\n"], CHAT.last_event) is True
    assert (stream.events, stream.kept) == (5, [first, usage])
    anthropic = DeferredStream(ChatStream("anthropic"))
    stop = b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
    assert anthropic.take_all([b"event: ping\ndata: {}\n\n"], MESSAGES.last_event) is False
    assert anthropic.take_all([b'data: {"text": "message_stop"}\n\n', stop], MESSAGES.last_event) is True
    assert anthropic.events == 3


def test_asking_for_usage_keeps_the_rest_of_the_body_bytes() -> None:
    body = b'{"model": "gpt-4o", "stream": true}'
    assert _ask_usage(body, {"model": "gpt-4o", "stream": True}) == (
        b'{"stream_options":{"include_usage":true},"model": "gpt-4o", "stream": true}'
    )
    edited = _ask_usage(b'{"stream_options": {"x": 1}}', {"stream_options": {"x": 1}})
    assert edited == b'{"stream_options": {"x": 1, "include_usage": true}}'


def test_budget_specs() -> None:
    assert parse_budget_spec("50usd/month")[:2] == (Decimal("50"), None)
    assert parse_budget_spec("$2.5/day")[2].spec == "daily"
    assert parse_budget_spec("200000tokens/rolling:1h")[1:][0] == 200000
    with pytest.raises(BudgetConfigError):
        parse_budget_spec("lots/month")


def test_json_array_elements_whole_cut_short_and_malformed() -> None:
    assert _array_elements('[{"a": 1}\n,\r\n{"b": [2, "]"]}\n]') == ([{"a": 1}, {"b": [2, "]"]}], None)
    assert _array_elements(" [ ] ") == ([], None)
    assert _array_elements('[{"a": 1},{"b"') == (
        [{"a": 1}],
        "element 1 of the streamed JSON array is not JSON",
    )
    assert _array_elements('[{"a": 1},') == ([{"a": 1}], "the JSON array ended before its closing bracket")
    assert _array_elements('{"a": 1}') == ([], "the streamed body is not a JSON array")


def test_an_anthropic_system_given_as_blocks_is_counted_as_their_text() -> None:
    messages = [{"role": "user", "content": "hi"}]
    blocks = [{"type": "text", "text": "You are"}, {"type": "text", "text": "terse."}]
    as_blocks = _estimate_input({"system": blocks, "messages": messages}, "claude-sonnet-4-5")
    as_text = _estimate_input({"system": "You are\nterse.", "messages": messages}, "claude-sonnet-4-5")
    without = _estimate_input({"messages": messages}, "claude-sonnet-4-5")
    assert as_blocks == as_text > without


def test_histogram_buckets_are_cumulative_and_end_with_inf() -> None:
    histogram = Histogram()
    for seconds in (0.0001, 0.0005, 0.003, 1000.0):
        histogram.observe(("openai.chat", "openai"), seconds)
    buckets = dict(histogram.buckets(("openai.chat", "openai")))
    assert buckets["0.0005"] == 2  # a bound is inclusive (le)
    assert buckets["0.005"] == 3 and buckets[str(BUCKETS[-1])] == 3 and buckets["+Inf"] == 4
    assert histogram.sums[("openai.chat", "openai")] == 0.0001 + 0.0005 + 0.003 + 1000.0


_SERVER_IMPLEMENTATION = (
    "import sys\n"
    "for name in sys.argv[1:]: sys.modules[name] = None  # as if not installed\n"
    "from tokentrail.cli.gateway import server_implementation\n"
    "print(*server_implementation())\n"
)


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ((), "httptools uvloop"),
        (("httptools",), "h11 uvloop"),
        (("uvloop",), "httptools asyncio"),
        (("httptools", "uvloop"), "h11 asyncio"),
    ],
)
def test_the_gateway_serves_with_httptools_and_uvloop_falling_back_to_h11_and_asyncio(
    missing: tuple[str, ...], expected: str
) -> None:
    pytest.importorskip("httptools")
    pytest.importorskip("uvloop")
    ran = subprocess.run(
        [sys.executable, "-c", _SERVER_IMPLEMENTATION, *missing], capture_output=True, text=True, check=True
    )
    assert ran.stdout.split() == expected.split()
