"""Hosted agent sessions under `instrument()`, with the real SDK clients against the mock server
(`_mock_agents`), sync and async, plain, `with_raw_response` and `with_streaming_response`:

- OpenAI `beta.agents.sessions`: one record per finished turn, from the session's events (streamed
  creation, `events.stream`) or its turns (list, retrieve), once per turn id; at the model of the session's
  agent; a subagent's turn counted with the model unknown; the session's cumulative usage never;
- Anthropic `beta.sessions`: one record per model request (`span.model_request_end`), from the session's or
  a thread's events (list, stream), once per event id, at the session's or the thread's agent model; a
  terminated session's runtime one unpriced record; a dream's session records nothing (the dream does).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import anthropic
import openai
import pytest
from tests.adapters.stainless_clients import GPT, afetch, ant, calls, fetch, oai

from tokentrail.adapters import instrument, uninstrument
from tokentrail.testing._mock_agents import CHILD_MODEL, SESSION_MODEL
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

MODES = ["plain", "with_raw_response", "with_streaming_response"]
ENV: Any = {"type": "none"}


def _events(resource: Any, method: str, mode: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Read a server-sent event stream to its end the way `mode` says; the events as JSON."""
    if mode == "plain":
        with getattr(resource, method)(*args, **kwargs) as stream:
            return [event.to_dict() for event in stream]
    if mode == "with_raw_response":
        stream = getattr(resource.with_raw_response, method)(*args, **kwargs).parse()
        return [event.to_dict() for event in stream]
    with getattr(resource.with_streaming_response, method)(*args, **kwargs) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    return [json.loads(line[5:]) for line in lines]


async def _aevents(resource: Any, method: str, mode: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    if mode == "plain":
        stream = await getattr(resource, method)(*args, **kwargs)
        return [event.to_dict() async for event in stream]
    if mode == "with_raw_response":
        parsed = (await getattr(resource.with_raw_response, method)(*args, **kwargs)).parse()
        stream = await parsed if inspect.isawaitable(parsed) else parsed
        return [event.to_dict() async for event in stream]
    async with getattr(resource.with_streaming_response, method)(*args, **kwargs) as response:
        lines = [line async for line in response.iter_lines() if line.startswith("data:")]
    return [json.loads(line[5:]) for line in lines]


def _sorted(found: Any) -> list[tuple[str | None, int, int]]:
    return sorted(found, key=lambda t: (t[0] or "", t[1], t[2]))


def _tokens(tracker: Tracker) -> list[tuple[str | None, int, int]]:
    return _sorted((r.model, r.usage.input_tokens, r.usage.output_tokens) for r in tracker.history())


# -- OpenAI beta.agents.sessions -------------------------------------------------------------------------------


def _turn_tokens(turn: dict[str, Any], model: str | None) -> tuple[str | None, int, int]:
    usage = turn["usage"]
    return (model, usage["input_tokens"], usage["output_tokens"])


def _finished_turns(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["turn"] for e in events if e["type"] == "agent.session.turn.completed"]


@pytest.mark.parametrize("mode", MODES)
def test_openai_session_turns_are_recorded_once_each_from_the_events_read(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    client = oai(server)
    sessions = client.beta.agents.sessions
    session = fetch(sessions, "create", mode, environment=ENV, agent={"model": GPT}, input="Count my tokens")
    assert session.agent.model == GPT and session.usage is not None  # the cumulative usage: not recorded
    assert tracker.history() == []  # a session is no turn
    events = _events(sessions.events, "stream", mode, session.id)
    turns = _finished_turns(events)
    assert len(turns) == 1
    assert _tokens(tracker) == [_turn_tokens(turns[0], GPT)]
    record = tracker.history()[0]
    assert record.usage.status == "complete" and record.cost is not None and record.cost > 0
    assert record.usage.cache_read_tokens == turns[0]["usage"]["input_tokens_details"]["cached_tokens"]
    # read again, as events, as turns listed and retrieved: nothing new
    _events(sessions.events, "stream", mode, session.id)
    listed = fetch(sessions.turns, "list", mode, session.id)
    fetch(sessions.turns, "retrieve", mode, listed.data[0].id, session_id=session.id)
    fetch(sessions, "retrieve", mode, session.id)
    assert calls(server, "GET", f"/v1/agents/sessions/{session.id}/events") == 2
    assert _tokens(tracker) == [_turn_tokens(turns[0], GPT)]


@pytest.mark.parametrize("mode", MODES)
def test_openai_streamed_creation_records_its_turns_and_a_subagent_turn_without_a_model(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    client = oai(server)
    sessions = client.beta.agents.sessions
    agent = {"model": GPT, "multi_agent": {"enabled": True}}
    events = _events(sessions, "create", mode, environment=ENV, agent=agent, input="Split it", stream=True)
    turns = _finished_turns(events)
    assert len(turns) == 2  # the root turn and the subagent's
    expected = _sorted(_turn_tokens(t, None if t["subagent_id"] else GPT) for t in turns)
    assert _tokens(tracker) == expected
    unpriced = [r for r in tracker.history() if r.model is None]
    assert len(unpriced) == 1 and unpriced[0].cost is None
    assert unpriced[0].usage.reason is not None and "subagent" in unpriced[0].usage.reason
    session_id = events[0]["session"]["id"]
    subagent = next(t["subagent_id"] for t in turns if t["subagent_id"])
    fetch(sessions.subagents.turns, "list", mode, subagent, session_id=session_id)
    assert _tokens(tracker) == expected  # the subagent's turn again: once


def test_openai_turn_in_progress_is_recorded_when_seen_finished(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = oai(server)
    sessions = client.beta.agents.sessions
    session = sessions.create(environment=ENV, agent={"model": GPT})
    message = {"role": "user", "content": "And now?"}
    sessions.events.create(session.id, events=[{"type": "agent.session.input.message", "input": [message]}])
    first = sessions.turns.list(session.id)
    assert [t.status for t in first.data] == ["in_progress"]
    assert tracker.history() == []
    second = sessions.turns.list(session.id)
    assert [t.status for t in second.data] == ["completed"]
    usage = second.data[0].usage
    assert usage is not None
    assert _tokens(tracker) == [(GPT, usage.input_tokens, usage.output_tokens)]


def test_openai_turn_of_a_session_never_seen_is_counted_with_the_model_unknown(
    server: MockLLMServer,
) -> None:
    client = oai(server)
    session = client.beta.agents.sessions.create(
        environment=ENV, agent={"model": GPT}, input="Before tracking"
    )
    tracker = Tracker()
    instrument(tracker)
    try:
        turns = client.beta.agents.sessions.turns.list(session.id)
        usage = turns.data[0].usage
        assert usage is not None
        assert _tokens(tracker) == [(None, usage.input_tokens, usage.output_tokens)]
        record = tracker.history()[0]
        assert record.cost is None and record.usage.reason is not None and session.id in record.usage.reason
    finally:
        uninstrument()


@pytest.mark.parametrize("mode", MODES)
def test_async_openai_session_turns_record_once(server: MockLLMServer, tracker: Tracker, mode: str) -> None:
    async def run() -> list[dict[str, Any]]:
        client = oai(server, openai.AsyncOpenAI)
        sessions = client.beta.agents.sessions
        session = await afetch(sessions, "create", mode, environment=ENV, agent={"model": GPT}, input="Hi")
        events = await _aevents(sessions.events, "stream", mode, session.id)
        await _aevents(sessions.events, "stream", mode, session.id)
        await afetch(sessions.turns, "list", mode, session.id)
        return events

    turns = _finished_turns(asyncio.run(run()))
    assert len(turns) == 1
    assert _tokens(tracker) == [_turn_tokens(turns[0], GPT)]


# -- Anthropic beta.sessions -----------------------------------------------------------------------------------


def _requests(events: list[dict[str, Any]], model: str) -> list[tuple[str | None, int, int]]:
    """(model, input, output) of each model request: input with the cache reads and writes, as recorded."""
    found = []
    for event in events:
        if event["type"] == "span.model_request_end":
            u = event["model_usage"]
            total = u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
            found.append((model, total, u["output_tokens"]))
    return found


def _say(text: str) -> list[Any]:
    return [{"type": "user.message", "content": [{"type": "text", "text": text}]}]


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_session_model_requests_are_recorded_once_each(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    client = ant(server)
    sessions = client.beta.sessions
    session = fetch(sessions, "create", mode, agent="agent_mock", environment_id="env_mock")
    assert session.agent.model.id == SESSION_MODEL
    sessions.events.send(session.id, events=_say("Please delegate the search"))
    assert tracker.history() == []  # sending is no model request
    events = _events(sessions.events, "stream", mode, session.id)
    expected = _requests(events, SESSION_MODEL)
    assert len(expected) == 2
    assert _tokens(tracker) == _sorted(expected)
    # the same events listed, the primary thread's, read again: nothing new
    fetch(sessions.events, "list", mode, session.id)
    _events(sessions.events, "stream", mode, session.id)
    threads = fetch(sessions.threads, "list", mode, session.id).data
    primary = next(t for t in threads if t.parent_thread_id is None)
    child = next(t for t in threads if t.parent_thread_id is not None)
    fetch(sessions.threads.events, "list", mode, primary.id, session_id=session.id)
    assert _tokens(tracker) == _sorted(expected)
    # the child thread runs its own agent: its request at that agent's model
    child_events = _events(sessions.threads.events, "stream", mode, child.id, session_id=session.id)
    expected += _requests(child_events, CHILD_MODEL)
    assert _tokens(tracker) == _sorted(expected)
    assert all(r.cost is not None and r.usage.status == "complete" for r in tracker.history())
    assert calls(server, "GET", f"/v1/sessions/{session.id}/events/stream") == 2


def test_anthropic_terminated_session_runtime_is_one_unpriced_record(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = ant(server)
    session = client.beta.sessions.create(agent="agent_mock", environment_id="env_mock")
    client.beta.sessions.events.send(session.id, events=_say("Summarize the logs"))
    requests = _requests([e.to_dict() for e in client.beta.sessions.events.list(session.id)], SESSION_MODEL)
    archived = client.beta.sessions.archive(session.id)
    client.beta.sessions.retrieve(session.id)  # seen terminated again: once
    assert archived.status == "terminated" and archived.usage.active_seconds
    records = tracker.history()
    assert _tokens(tracker) == _sorted([*requests, (SESSION_MODEL, 0, 0)])
    runtime = next(r for r in records if r.usage.total_tokens == 0)
    assert runtime.usage.status == "unknown" and runtime.usage.requests == 0 and runtime.cost is None
    assert runtime.usage.reason is not None and "active seconds" in runtime.usage.reason
    # the cumulative session usage is never recorded on top of the model requests
    assert sum(r.usage.output_tokens for r in records) == archived.usage.output_tokens


def test_anthropic_dream_session_records_nothing_beyond_the_dream(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = ant(server)
    dream = client.beta.dreams.create(inputs=[], model="claude-opus-4-7")
    running = client.beta.dreams.retrieve(dream.id)
    assert running.status == "running" and running.session_id
    events = [e.to_dict() for e in client.beta.sessions.events.stream(running.session_id)]
    assert _requests(events, "x")  # the dream's session did make model requests
    assert tracker.history() == []
    finished = client.beta.dreams.retrieve(dream.id)
    assert finished.status == "completed"
    assert len(tracker.history()) == 1  # the dream itself, once


def test_anthropic_thread_never_seen_is_counted_with_the_model_unknown(server: MockLLMServer) -> None:
    client = ant(server)
    session = client.beta.sessions.create(agent="agent_mock", environment_id="env_mock")
    client.beta.sessions.events.send(session.id, events=_say("delegate this"))
    child = next(t for t in client.beta.sessions.threads.list(session.id) if t.parent_thread_id)
    tracker = Tracker()
    instrument(tracker)
    try:
        events = [
            e.to_dict() for e in client.beta.sessions.threads.events.list(child.id, session_id=session.id)
        ]
        assert _tokens(tracker) == _requests(events, None)
        record = tracker.history()[0]
        assert record.cost is None and record.usage.reason is not None and child.id in record.usage.reason
    finally:
        uninstrument()


@pytest.mark.parametrize("mode", MODES)
def test_async_anthropic_session_events_record_once(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    async def run() -> list[dict[str, Any]]:
        client = ant(server, anthropic.AsyncAnthropic)
        sessions = client.beta.sessions
        session = await afetch(sessions, "create", mode, agent="agent_mock", environment_id="env_mock")
        await sessions.events.send(session.id, events=_say("Go"))
        events = await _aevents(sessions.events, "stream", mode, session.id)
        await afetch(sessions.events, "list", mode, session.id)
        await _aevents(sessions.events, "stream", mode, session.id)
        return events

    events = asyncio.run(run())
    assert _tokens(tracker) == _sorted(_requests(events, SESSION_MODEL))
    assert len(tracker.history()) == 2
