"""cohere under `instrument()`: every way a billable method is called — plain, `with_raw_response`,
streamed (plain and raw), sync and async, v2 and v1 — is recorded exactly once per request the mock
server counted, with the usage Cohere reports (`usage.billed_units`, `meta.billed_units`), or `unknown`
with the reason (rerank, classify and parse units; the v1 generate stream's end event, which carries none).

The mock server answers in the shapes of the Cohere API reference and cohere-python 7.3.1's schemas
(see `tokentrail.testing._mock_routes`)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sdk_calls import complete, made, one_call

import tokentrail as tt
from tokentrail.adapters.cohere import ChatStream
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

cohere = pytest.importorskip("cohere")

MODEL = "command-a-03-2025"
MESSAGES = [{"role": "user", "content": "Summarize the recording."}]
DOCUMENT = "data:image/png;base64,iVBORw0KGgo="


def v2(server: MockLLMServer) -> Any:
    return cohere.ClientV2(api_key="test", base_url=server.base, max_retries=0)


def v1(server: MockLLMServer) -> Any:
    return cohere.Client(api_key="test", base_url=server.base, max_retries=0)


def drain(opening: Any) -> list[Any]:
    """Read a raw stream the way its docs show: open it, read every event of its response's `data`."""
    with opening as response:
        assert isinstance(response, cohere.core.HttpResponse)
        return list(response.data)


async def adrain(opening: Any) -> list[Any]:
    async with opening as response:
        assert isinstance(response, cohere.core.AsyncHttpResponse)
        return [event async for event in response.data]


def returning(
    server: MockLLMServer, tracker: Tracker, suffix: str, call: Callable[[], Any]
) -> tuple[tt.Record, Any]:
    """`one_call` (one request, one record), and what the call returned to its caller."""
    result: list[Any] = []
    record = one_call(server, tracker, suffix, lambda: result.append(call()))
    return record, result[0]


def async_calls(
    server: MockLLMServer, tracker: Tracker, suffix: str, count: int, calls: Callable[[], Awaitable[Any]]
) -> list[tt.Record]:
    """Run `calls()` on a fresh event loop: the server saw `count` requests, the tracker holds `count` new
    records."""
    before, records = len(server.requests), len(tracker.history())
    asyncio.run(calls())
    assert made(server, before, suffix) == count
    new = tracker.history()[records:]
    assert len(new) == count, new
    return new


# -- v2 chat: plain, raw, streamed, raw streamed; sync and async ------------------------------------------

V2_CHAT: dict[str, Callable[[Any], Any]] = {
    "plain": lambda c: c.chat(model=MODEL, messages=MESSAGES),
    "raw": lambda c: c.with_raw_response.chat(model=MODEL, messages=MESSAGES).data,
    "stream": lambda c: list(c.chat_stream(model=MODEL, messages=MESSAGES)),
    "raw stream": lambda c: drain(c.with_raw_response.chat_stream(model=MODEL, messages=MESSAGES)),
}


async def _collect(stream: Any) -> list[Any]:
    return [event async for event in stream]


V2_ACHAT: dict[str, Callable[[Any], Any]] = {
    "plain": lambda c: c.chat(model=MODEL, messages=MESSAGES),
    "raw": lambda c: c.with_raw_response.chat(model=MODEL, messages=MESSAGES),
    "stream": lambda c: _collect(c.chat_stream(model=MODEL, messages=MESSAGES)),
    "raw stream": lambda c: adrain(c.with_raw_response.chat_stream(model=MODEL, messages=MESSAGES)),
}


def ends_with_usage(result: Any) -> None:
    """What the caller got is what the SDK returns: the response, or every event up to `message-end`."""
    if isinstance(result, list):
        assert result[-1].type == "message-end" and result[-1].delta.usage.billed_units.output_tokens == 9
    else:
        result = getattr(result, "data", result)
        assert result.usage.billed_units.input_tokens == 31


@pytest.mark.parametrize("mode", sorted(V2_CHAT))
def test_v2_chat_is_recorded_once_whichever_way_it_is_called(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    client = v2(server)
    server.queue(input=31, output=9, route="cohere")
    record, result = returning(server, tracker, "/v2/chat", lambda: V2_CHAT[mode](client))
    complete(record, 31, 9)
    assert (record.model, record.provider) == (MODEL, "cohere")
    ends_with_usage(result)


@pytest.mark.parametrize("mode", sorted(V2_ACHAT))
def test_async_v2_chat_is_recorded_once_whichever_way_it_is_called(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    async def call() -> Any:
        client = cohere.AsyncClientV2(api_key="test", base_url=server.base, max_retries=0)
        return await V2_ACHAT[mode](client)

    server.queue(input=31, output=9, route="cohere")
    record, result = returning(server, tracker, "/v2/chat", lambda: asyncio.run(call()))
    complete(record, 31, 9)
    ends_with_usage(result)


def test_a_client_built_before_instrument_is_tracked(server: MockLLMServer) -> None:
    """`ClientV2` copies its bound methods onto each client: the raw client they call is what is patched."""
    client = v2(server)
    tracker = Tracker()
    tt.instrument(tracker, providers=["cohere"])
    try:
        server.queue(input=12, output=3, route="cohere")
        complete(one_call(server, tracker, "/v2/chat", lambda: V2_CHAT["plain"](client)), 12, 3)
        server.queue(input=13, output=4, route="cohere")
        complete(one_call(server, tracker, "/v2/chat", lambda: V2_CHAT["stream"](client)), 13, 4)
    finally:
        tt.uninstrument()


def test_a_v1_clients_v2_namespace_is_tracked(server: MockLLMServer, tracker: Tracker) -> None:
    client = v1(server)
    server.queue(input=14, output=2, route="cohere")
    record = one_call(server, tracker, "/v2/chat", lambda: client.v2.chat(model=MODEL, messages=MESSAGES))
    complete(record, 14, 2)


# -- streams left early, never opened, failing --------------------------------------------------------------


def test_a_raw_stream_left_after_its_first_event_is_recorded_once_as_closed_early(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = v2(server)

    def first_event() -> None:
        with client.with_raw_response.chat_stream(model=MODEL, messages=MESSAGES) as response:
            assert next(iter(response.data)).type == "message-start"

    record = one_call(server, tracker, "/v2/chat", first_event)
    assert record.usage.status is tt.UsageStatus.UNKNOWN
    assert "closed early after 1 events" in (record.usage.reason or "")


def test_a_plain_stream_closed_early_is_recorded_once(server: MockLLMServer, tracker: Tracker) -> None:
    client = v2(server)

    def first_event() -> None:
        stream = client.chat_stream(model=MODEL, messages=MESSAGES)
        next(stream)
        stream.close()

    record = one_call(server, tracker, "/v2/chat", first_event)
    assert "closed early" in (record.usage.reason or "")


def test_a_raw_stream_never_opened_sends_nothing_and_records_nothing(
    server: MockLLMServer, tracker: Tracker
) -> None:
    before = len(server.requests)
    opening = v2(server).with_raw_response.chat_stream(model=MODEL, messages=MESSAGES)
    del opening
    gc.collect()
    assert made(server, before, "/v2/chat") == 0
    assert tracker.history() == []


def test_a_failing_raw_stream_raises_and_records_nothing(server: MockLLMServer, tracker: Tracker) -> None:
    client = v2(server)
    server.queue(status=500, route="cohere")
    with pytest.raises(cohere.core.ApiError):
        drain(client.with_raw_response.chat_stream(model=MODEL, messages=MESSAGES))
    server.queue(status=500, route="cohere")
    with pytest.raises(cohere.core.ApiError):
        client.with_raw_response.chat(model=MODEL, messages=MESSAGES)
    assert tracker.history() == []
    assert tracker.error_counts.get("call_errors") == 2


# -- v2 embed, rerank, parse: plain and raw ------------------------------------------------------------------


def test_v2_embed_and_rerank_through_the_raw_client(server: MockLLMServer, tracker: Tracker) -> None:
    raw = v2(server).with_raw_response
    server.queue(input=6, route="cohere.embed")
    embedded = one_call(
        server,
        tracker,
        "/v2/embed",
        lambda: raw.embed(
            model="embed-v4.0", texts=["a b"], input_type="search_query", embedding_types=["float"]
        ),
    )
    complete(embedded, 6)
    reranked = one_call(
        server,
        tracker,
        "/v2/rerank",
        lambda: raw.rerank(model="rerank-v3.5", query="q", documents=["a", "b"]),
    )
    assert reranked.usage.status is tt.UsageStatus.COMPLETE and reranked.usage.rerank_searches == 1


PARSE: dict[str, Callable[[Any], Any]] = {
    "plain": lambda c: c.parse(model="parse-v5.0", document=cohere.ParseDocument(image_url=DOCUMENT)),
    "raw": lambda c: (
        c.with_raw_response.parse(model="parse-v5.0", document=cohere.ParseDocument(image_url=DOCUMENT)).data
    ),
}


@pytest.mark.parametrize("mode", sorted(PARSE))
def test_parse_is_recorded_with_its_billed_pages(server: MockLLMServer, tracker: Tracker, mode: str) -> None:
    record, result = returning(server, tracker, "/v2/parse", lambda: PARSE[mode](v2(server)))
    assert record.usage.status is tt.UsageStatus.COMPLETE
    assert record.usage.input_document_pages == 1
    assert record.model == "parse-v5.0"
    assert result.meta.billed_units.pages == 1


def test_async_parse_is_recorded(server: MockLLMServer, tracker: Tracker) -> None:
    async def call() -> Any:
        client = cohere.AsyncClientV2(api_key="test", base_url=server.base, max_retries=0)
        await client.parse(model="parse-v5.0", document=cohere.ParseDocument(image_url=DOCUMENT))
        return await client.with_raw_response.parse(
            model="parse-v5.0", document=cohere.ParseDocument(image_url=DOCUMENT)
        )

    records = async_calls(server, tracker, "/v2/parse", 2, call)
    assert [r.usage.input_document_pages for r in records] == [1, 1]


# -- v1: chat and generate, plain, raw and streamed; the other legacy endpoints raw ---------------------------

V1_CHAT: dict[str, Callable[[Any], Any]] = {
    "plain": lambda c: c.chat(model="command-r", message="hi"),
    "raw": lambda c: c.with_raw_response.chat(model="command-r", message="hi").data,
    "stream": lambda c: list(c.chat_stream(model="command-r", message="hi")),
    "raw stream": lambda c: drain(c.with_raw_response.chat_stream(model="command-r", message="hi")),
}


@pytest.mark.parametrize("mode", sorted(V1_CHAT))
def test_v1_chat_is_recorded_once_whichever_way_it_is_called(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    server.queue(input=21, output=4, route="cohere.chat_v1")
    record, result = returning(server, tracker, "/v1/chat", lambda: V1_CHAT[mode](v1(server)))
    complete(record, 21, 4)
    assert record.model == "command-r"
    if mode.endswith("stream"):
        assert (result[0].event_type, result[-1].event_type) == ("stream-start", "stream-end")


def test_async_v1_chat_stream_plain_and_raw(server: MockLLMServer, tracker: Tracker) -> None:
    async def call() -> None:
        client = cohere.AsyncClient(api_key="test", base_url=server.base, max_retries=0)
        await _collect(client.chat_stream(model="command-r", message="hi"))
        await adrain(client.with_raw_response.chat_stream(model="command-r", message="hi"))

    server.queue(input=22, output=5, route="cohere.chat_v1")
    server.queue(input=23, output=6, route="cohere.chat_v1")
    records = async_calls(server, tracker, "/v1/chat", 2, call)
    complete(records[0], 22, 5)
    complete(records[1], 23, 6)


def test_v1_generate_plain_and_raw(server: MockLLMServer, tracker: Tracker) -> None:
    client = v1(server)
    server.queue(input=18, output=6, route="cohere.generate_v1")
    complete(one_call(server, tracker, "/v1/generate", lambda: client.generate(prompt="hi")), 18, 6)
    server.queue(input=17, output=5, route="cohere.generate_v1")
    raw = client.with_raw_response
    complete(one_call(server, tracker, "/v1/generate", lambda: raw.generate(prompt="hi").data), 17, 5)


GENERATE_STREAM: dict[str, Callable[[Any], Any]] = {
    "stream": lambda c: list(c.generate_stream(model="command", prompt="hi")),
    "raw stream": lambda c: drain(c.with_raw_response.generate_stream(model="command", prompt="hi")),
}


@pytest.mark.parametrize("mode", sorted(GENERATE_STREAM))
def test_v1_generate_stream_is_recorded_unknown_because_its_end_event_has_no_billed_units(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    record, result = returning(server, tracker, "/v1/generate", lambda: GENERATE_STREAM[mode](v1(server)))
    assert record.usage.status is tt.UsageStatus.UNKNOWN
    reason = record.usage.reason or ""
    assert (
        "stream ended after" in reason
        and "generate stream's stream-end event reports no billed units" in reason
    )
    assert record.model == "command"
    assert result[-1].event_type == "stream-end"


def test_async_v1_generate_stream_is_recorded(server: MockLLMServer, tracker: Tracker) -> None:
    async def call() -> None:
        client = cohere.AsyncClient(api_key="test", base_url=server.base, max_retries=0)
        await _collect(client.generate_stream(model="command", prompt="hi"))
        await adrain(client.with_raw_response.generate_stream(model="command", prompt="hi"))

    records = async_calls(server, tracker, "/v1/generate", 2, call)
    assert [r.usage.status for r in records] == [tt.UsageStatus.UNKNOWN] * 2


def test_v1_raw_embed_rerank_summarize_classify(server: MockLLMServer, tracker: Tracker) -> None:
    raw = v1(server).with_raw_response
    server.queue(input=8, route="cohere.embed_v1")
    complete(
        one_call(
            server,
            tracker,
            "/v1/embed",
            lambda: raw.embed(model="embed-english-v3.0", texts=["a"], input_type="search_query"),
        ),
        8,
    )
    server.queue(input=120, output=15, route="cohere.summarize_v1")
    complete(one_call(server, tracker, "/v1/summarize", lambda: raw.summarize(text="long " * 60)), 120, 15)
    reranked = one_call(server, tracker, "/v1/rerank", lambda: raw.rerank(query="q", documents=["a"]))
    assert reranked.usage.rerank_searches == 1
    classified = one_call(server, tracker, "/v1/classify", lambda: raw.classify(inputs=["great", "awful"]))
    assert "classifications=2" in (classified.usage.reason or "")


def test_async_v1_raw_embed_is_recorded_once(server: MockLLMServer, tracker: Tracker) -> None:
    async def call() -> Any:
        client = cohere.AsyncClient(api_key="test", base_url=server.base, max_retries=0)
        return await client.with_raw_response.embed(texts=["a"], input_type="search_query")

    server.queue(input=9, route="cohere.embed_v1")
    complete(one_call(server, tracker, "/v1/embed", lambda: asyncio.run(call())), 9)


# -- wrap(client) ------------------------------------------------------------------------------------------------


def test_wrap_tracks_that_clients_plain_raw_and_streamed_calls_once(server: MockLLMServer) -> None:
    mine, everyone = Tracker(), Tracker()
    wrapped = tt.wrap(v2(server), mine)
    other = v2(server)
    for mode in ("plain", "raw", "stream", "raw stream"):
        V2_CHAT[mode](wrapped)
        V2_CHAT[mode](other)
    assert len(mine.history()) == 4
    tt.instrument(everyone, providers=["cohere"])
    try:
        for mode in ("plain", "raw stream"):
            V2_CHAT[mode](wrapped)
            V2_CHAT[mode](other)
    finally:
        tt.uninstrument()
    assert (len(mine.history()), len(everyone.history())) == (6, 2)
    assert all(r.usage.status is tt.UsageStatus.COMPLETE for r in mine.history() + everyone.history())


def test_wrap_tracks_a_v1_clients_raw_calls(server: MockLLMServer) -> None:
    mine = Tracker()
    client = tt.wrap(v1(server), mine)
    server.queue(input=21, output=4, route="cohere.chat_v1")
    client.with_raw_response.chat(model="command-r", message="hi")
    server.queue(input=20, output=3, route="cohere.chat_v1")
    client.chat(model="command-r", message="hi")
    assert [(r.usage.input_tokens, r.usage.output_tokens) for r in mine.history()] == [(21, 4), (20, 3)]


# -- the stream reader ---------------------------------------------------------------------------------------


def test_a_generate_stream_end_that_does_carry_meta_is_read() -> None:
    """Cohere's schema has no `meta` on the generate stream-end response (the SDK keeps extra fields): should
    the API send one, its billed units are used."""
    accumulator = ChatStream()
    accumulator.feed({"event_type": "text-generation", "text": "hi", "is_finished": False})
    meta = {"billed_units": {"input_tokens": 3, "output_tokens": 1}}
    response = {"id": "g", "generations": [{"id": "x", "text": "hi"}], "meta": meta}
    accumulator.feed({"event_type": "stream-end", "is_finished": True, "response": response})
    accumulator.close()
    usage = accumulator.usage()
    assert (usage.status, usage.input_tokens, usage.output_tokens) == (tt.UsageStatus.COMPLETE, 3, 1)
