"""The Gemini Live API under `instrument()`: the real google-genai client (`client.aio.live.connect`) against a
local server speaking the Live protocol's documented JSON messages (`tokentrail.testing._mock_live`).

One record per model turn, with the tokens its `usageMetadata` reported; a turn whose usage never reached
the client is `unknown` with the reason, once; every turn is attributed to the scope `connect()` was entered in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import live, types

import tokentrail as tt
from tokentrail.adapters import instrument, instrumented, uninstrument, wrap
from tokentrail.testing._mock_live import LiveTurnScript, MockLiveServer, live_usage
from tokentrail.tracker import Tracker

MODEL = "gemini-live-2.5-flash-preview"
HELLO = {"role": "user", "parts": [{"text": "Hello"}]}


@pytest.fixture(scope="module")
def live_server() -> Iterator[MockLiveServer]:
    with MockLiveServer() as running:
        yield running


@pytest.fixture
def server(live_server: MockLiveServer) -> MockLiveServer:
    live_server.turns.clear()
    return live_server


def client(server: MockLiveServer, **options: Any) -> Any:
    return genai.Client(api_key="test", http_options=server.http_options(**options))


async def turn(session: Any, *, until_output: bool = False) -> list[Any]:
    """Ask for one model turn and read it as the SDK's docs do (`receive()` stops at turnComplete); a tool
    call is answered and the turn read on; `until_output` stops at the first model output instead."""
    await session.send_client_content(turns=HELLO)
    return await read(session, until_output=until_output)


async def read(session: Any, *, until_output: bool = False) -> list[Any]:
    messages = []
    async for message in session.receive():
        messages.append(message)
        if until_output and message.server_content is not None and message.server_content.model_turn:
            break
        if message.tool_call is not None:
            calls = message.tool_call.function_calls or []
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id=c.id, name=c.name, response={"ok": 1}) for c in calls
                ]
            )
    return messages


def served(server: MockLiveServer) -> list[dict[str, Any] | None]:
    return [t.usage for t in server.turns]


def session_turns(
    server: MockLiveServer,
    tracker: Tracker,
    *scripts: LiveTurnScript,
    asks: int,
    leave_mid_turn: bool = False,
) -> list[tt.Record]:
    """Queue `scripts`, ask for `asks` turns in one session (leaving the last one at its first output when
    `leave_mid_turn`), and check that every turn the server played is one record."""
    server.queue(*scripts)

    async def run() -> None:
        async with client(server).aio.live.connect(model=MODEL) as session:
            for n in range(asks):
                await turn(session, until_output=leave_mid_turn and n == asks - 1)

    asyncio.run(run())
    records = tracker.history()
    assert len(records) == len(server.turns) == len(scripts), (records, server.turns)
    return records


def test_connect_is_patched_and_the_caller_gets_the_sdks_own_session(
    server: MockLiveServer, tracker: Tracker
) -> None:
    assert "google.genai.live.AsyncLive.connect" in instrumented()

    async def run() -> Any:
        async with client(server).aio.live.connect(model=MODEL) as session:
            await turn(session)
            return session

    session = asyncio.run(run())
    assert type(session) is live.AsyncSession
    assert len(tracker.history()) == len(server.turns) == 1


def test_each_turn_is_one_record_with_the_tokens_its_usage_metadata_reported(
    server: MockLiveServer, tracker: Tracker
) -> None:
    rich = live_usage(
        40,
        25,
        cachedContentTokenCount=16,
        thoughtsTokenCount=7,
        toolUsePromptTokenCount=5,
        responseTokensDetails=[{"modality": "AUDIO", "tokenCount": 25}],
        cacheTokensDetails=[{"modality": "TEXT", "tokenCount": 16}],
    )
    with tt.scope(agent="voice"):
        records = session_turns(
            server,
            tracker,
            LiveTurnScript(text="First answer.", usage=live_usage(12, 3)),
            # a tool call, answered: the model's next turn follows in the same receive()
            LiveTurnScript(tool_call={"name": "lookup", "args": {"q": "x"}}, usage=live_usage(30, 4)),
            LiveTurnScript(text="After the tool.", usage=rich),
            # usage after turnComplete: read by the next receive()
            LiveTurnScript(text="Usage on its own message.", usage=live_usage(60, 6), usage_apart=True),
            LiveTurnScript(text="Last.", usage=live_usage(70, 2)),
            asks=4,
        )
    assert [r.usage.status for r in records] == [tt.UsageStatus.COMPLETE] * 5
    expected = served(server)
    assert [(r.usage.input_tokens, r.usage.output_tokens) for r in records] == [
        (
            u["promptTokenCount"] + u.get("toolUsePromptTokenCount", 0),
            u["responseTokenCount"] + u.get("thoughtsTokenCount", 0),
        )
        for u in expected
        if u is not None
    ]
    detailed = records[2].usage
    assert (detailed.input_tokens, detailed.output_tokens) == (45, 32)
    assert (detailed.cache_read_tokens, detailed.reasoning_tokens, detailed.output_audio_tokens) == (
        16,
        7,
        25,
    )
    assert {r.model for r in records} == {MODEL}
    assert {r.provider for r in records} == {"google"}
    assert {r.agent for r in records} == {"voice"}


def test_a_turn_whose_usage_never_arrived_is_unknown_once(server: MockLiveServer, tracker: Tracker) -> None:
    records = session_turns(
        server,
        tracker,
        LiveTurnScript(usage=live_usage(12, 3)),
        LiveTurnScript(text="Cut short by the caller.", hold=True),
        asks=2,
        leave_mid_turn=True,  # the caller leaves mid-turn
    )
    assert records[0].usage.status == tt.UsageStatus.COMPLETE
    last = records[1].usage
    assert last.status == tt.UsageStatus.UNKNOWN
    assert last.reason is not None and "session closed first" in last.reason


def test_usage_left_unread_when_the_session_closes_is_unknown_not_dropped(
    server: MockLiveServer, tracker: Tracker
) -> None:
    """receive() stops at turnComplete; usage the server sends after it is read by the next receive() only."""
    records = session_turns(
        server, tracker, LiveTurnScript(usage=live_usage(12, 3), usage_apart=True), asks=1
    )
    assert records[0].usage.status == tt.UsageStatus.UNKNOWN
    assert "session closed first" in (records[0].usage.reason or "")


def test_a_turn_completed_without_usage_is_unknown_when_the_next_begins(
    server: MockLiveServer, tracker: Tracker
) -> None:
    records = session_turns(
        server, tracker, LiveTurnScript(omit_usage=True), LiveTurnScript(usage=live_usage(20, 5)), asks=2
    )
    assert records[0].usage.status == tt.UsageStatus.UNKNOWN
    assert "next turn began first" in (records[0].usage.reason or "")
    assert (records[1].usage.status, records[1].usage.input_tokens, records[1].usage.output_tokens) == (
        tt.UsageStatus.COMPLETE,
        20,
        5,
    )


def test_turns_are_attributed_to_the_scope_connect_was_entered_in(
    server: MockLiveServer, tracker: Tracker
) -> None:
    server.queue(LiveTurnScript(usage=live_usage(12, 3)), LiveTurnScript(usage=live_usage(14, 4)))

    async def run() -> None:
        with tt.scope(agent="caller", session="live-1"):
            connection = client(server).aio.live.connect(model=MODEL)
            session = await connection.__aenter__()
        try:

            async def elsewhere() -> None:
                with tt.scope(agent="someone-else"):
                    await turn(session)
                    await turn(session)

            await asyncio.create_task(elsewhere())
        finally:
            await connection.__aexit__(None, None, None)

    asyncio.run(run())
    records = tracker.history()
    assert len(records) == len(server.turns) == 2
    assert {(r.agent, r.session) for r in records} == {("caller", "live-1")}


def test_a_wrapped_client_records_each_turn_once_beside_instrument(
    server: MockLiveServer, tracker: Tracker
) -> None:
    own = Tracker()
    wrapped = wrap(client(server), own)
    server.queue(LiveTurnScript(usage=live_usage(12, 3)), LiveTurnScript(usage=live_usage(14, 4)))

    async def run() -> None:
        async with wrapped.aio.live.connect(model=MODEL) as session:
            await turn(session)
            await turn(session)

    asyncio.run(run())
    assert len(own.history()) == len(server.turns) == 2
    assert tracker.history() == []


def test_a_session_that_fails_to_open_records_nothing_and_counts_the_error(
    server: MockLiveServer, tracker: Tracker
) -> None:
    async def run() -> None:
        async with client(server, api_version="v0").aio.live.connect(model=MODEL):
            pass  # the server refuses an unknown method: the SDK raises while opening

    with pytest.raises(genai.errors.APIError):
        asyncio.run(run())
    assert tracker.history() == []
    assert tracker.error_counts.get("call_errors") == 1


def test_nothing_is_tracked_after_uninstrument(server: MockLiveServer) -> None:
    tracker = Tracker()
    instrument(tracker)
    uninstrument()

    async def run() -> None:
        async with client(server).aio.live.connect(model=MODEL) as session:
            await turn(session)

    asyncio.run(run())
    assert len(server.turns) == 1
    assert tracker.history() == []
