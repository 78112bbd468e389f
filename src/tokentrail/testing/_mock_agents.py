"""Hosted agent session routes of the mock server (reached through `_mock_runs.answer`): OpenAI
`/v1/agents/sessions` and Anthropic Managed Agents `/v1/sessions`.

A session runs each input at once, as one turn with deterministic usage (a function of the input text),
and keeps its events; an event stream replays every event the session has so far, then ends (a real
session's stream stays open between turns). Usage in the session object is the running total, as the
real APIs report it.

OpenAI (openai-python 3.57.0 `types/beta/agent_session.py`, `agents/sessions/turn.py`, `token_usage.py`,
`agent_session_{created,idle,turn_created,turn_completed}_event.py`;
https://developers.openai.com/api/docs/guides/agents-api/observability): create (with `input`: one turn;
`stream: true`: the events as server-sent events), retrieve, update, list; `POST …/events` with `agent.session.input.message` events
queues a turn that is `in_progress` until the session's turns or events are next read, then `completed`; an agent with
`multi_agent.enabled` also runs one subagent turn per root turn (`subagent_id` set), shown in the event
stream and under `subagents/{id}/turns`.

Anthropic (anthropic-sdk-python 2.13.0 `types/beta/beta_managed_agents_session.py`,
`beta_managed_agents_session_usage.py`, `sessions/beta_managed_agents_span_model_request_{start,end}_event.py`,
`sessions/beta_managed_agents_session_thread.py`; https://platform.claude.com/docs/en/managed-agents/
events-and-streaming, …/multiagent): `POST …/events` with a `user.message` runs one turn of two model
requests (`span.model_request_start` / `span.model_request_end`) in the primary thread, whose events are the
session's; a message containing "delegate" also runs a child thread (its own agent, `CHILD_MODEL`) with one
model request, seen only in that thread's events. `archive` terminates the session: its usage gets
`active_seconds` and `list_cost`. A dream's session (`dream_session`) has model requests of its own.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from tokentrail.testing._mock_wire import count, new_id, public, sse, write_json

__all__ = ["CHILD_MODEL", "SESSION_MODEL", "answer_anthropic", "answer_openai", "dream_session"]

SESSION_MODEL = "claude-sonnet-4-5"  # an Anthropic session's agent model unless the request overrides it
CHILD_MODEL = "claude-haiku-4-5"  # the agent of a child thread
_CREATED = 1_714_508_499
_TIME = "2026-05-01T12:00:00Z"
_lock = threading.Lock()
_openai: dict[str, dict[str, Any]] = {}  # session id -> {"session", "turns", "events"}
_anthropic: dict[str, dict[str, Any]] = {}  # session id -> {"session", "events", "threads"}
_KEPT = 1_024


def _keep(table: dict[str, dict[str, Any]], key: str, entry: dict[str, Any]) -> dict[str, Any]:
    with _lock:
        table[key] = entry
        while len(table) > _KEPT:
            table.pop(next(iter(table)))
    return entry


def _json(handler: Any, status: int, payload: object) -> bool:
    write_json(handler, status, payload)
    return True


def _stream(handler: Any, events: list[tuple[str, dict[str, Any]]]) -> bool:
    data = b"".join(sse(public(payload), name) for name, payload in events)
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
    return True


def _missing(handler: Any, what: str) -> bool:
    return _json(handler, 404, {"error": {"type": "not_found_error", "message": f"no such {what}"}})


def _text(value: object) -> str:
    """The text of an input given as a string or as message/content blocks."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _text(value.get("text") or value.get("content") or "")
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return ""


# -- OpenAI /v1/agents/sessions --------------------------------------------------------------------------------


def _token_usage(input_tokens: int, cached: int, output: int, reasoning: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output,
    }


def _add_usage(total: dict[str, Any] | None, usage: dict[str, Any]) -> dict[str, Any]:
    if total is None:
        return json.loads(json.dumps(usage))  # type: ignore[no-any-return]
    return _token_usage(
        total["input_tokens"] + usage["input_tokens"],
        total["input_tokens_details"]["cached_tokens"] + usage["input_tokens_details"]["cached_tokens"],
        total["output_tokens"] + usage["output_tokens"],
        total["output_tokens_details"]["reasoning_tokens"]
        + usage["output_tokens_details"]["reasoning_tokens"],
    )


def answer_openai(handler: Any, method: str, rest: list[str], body: dict[str, Any]) -> bool:
    if method == "POST" and not rest:
        return _openai_create(handler, body)
    if method == "GET" and not rest:
        with _lock:
            data = [dict(e["session"]) for e in _openai.values()]
        ids = [d["id"] for d in data]
        first, last = (ids[0], ids[-1]) if ids else (None, None)
        page = {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False}
        return _json(handler, 200, page)
    entry = _openai.get(rest[0])
    if entry is None:
        return _missing(handler, "session")
    tail = rest[1:]
    if not tail and method == "GET":
        return _json(handler, 200, entry["session"])
    if not tail and method == "POST":  # update
        entry["session"]["metadata"] = dict(body.get("metadata") or {})
        return _json(handler, 200, entry["session"])
    if tail == ["events"] and method == "POST":  # input messages: a turn, finished when next read (202)
        sent = [e for e in body.get("events") or [] if e.get("type") == "agent.session.input.message"]
        if sent:
            _openai_turn(entry, _text([e.get("input") for e in sent]), finished=False)
        handler.send_response(202)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True
    _openai_advance(entry)
    if tail == ["events"] and method == "GET":
        return _stream(handler, [(e["type"], e) for e in entry["events"]])
    if tail[:1] == ["turns"] or (tail[:1] == ["subagents"] and tail[2:3] == ["turns"]):
        subagent = tail[1] if tail[0] == "subagents" else None
        turns = [t for t in entry["turns"] if t["subagent_id"] == subagent]
        wanted = tail[3:] if subagent else tail[1:]
        if wanted:
            found = next((t for t in turns if t["id"] == wanted[0]), None)
            return _json(handler, 200, found) if found else _missing(handler, "turn")
        ids = [t["id"] for t in turns]
        first, last = (ids[0], ids[-1]) if ids else (None, None)
        page = {"object": "list", "data": turns, "first_id": first, "last_id": last, "has_more": False}
        return _json(handler, 200, page)
    return _missing(handler, "route")


def _openai_create(handler: Any, body: dict[str, Any]) -> bool:
    agent_body = body.get("agent") or {}
    multi = bool((agent_body.get("multi_agent") or {}).get("enabled"))
    session: dict[str, Any] = {
        "id": new_id("sess_"),
        "object": "agent.session",
        "agent": {
            "id": body.get("agent_id") or new_id("agent_"),
            "instructions": agent_body.get("instructions"),
            "model": agent_body.get("model") or "gpt-5.4",
            "multi_agent": {"enabled": multi, "max_concurrent_subagents": 6 if multi else None},
            "name": None,
            "reasoning": {"effort": "medium", "summary": None},
            "service_tier": agent_body.get("service_tier") or "auto",
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tools": [],
        },
        "created_at": _CREATED,
        "environment": {"type": "none"},
        "error": None,
        "last_active_at": _CREATED,
        "metadata": dict(body.get("metadata") or {}),
        "required_actions": [],
        "status": "idle",
        "usage": None,
        "vault_ids": [],
    }
    entry = _keep(_openai, session["id"], {"session": session, "turns": [], "events": [], "subagent": None})
    created = {"event_id": new_id("evt_"), "session": dict(session), "type": "agent.session.created"}
    entry["events"].append(created)
    text = _text(body.get("input"))
    if text:
        _openai_turn(entry, text, finished=True)
    if body.get("stream"):
        return _stream(handler, [(e["type"], e) for e in entry["events"]])
    return _json(handler, 200, session)


def _turn(session_id: str, agent_id: str, subagent: str | None) -> dict[str, Any]:
    return {
        "id": new_id("turn_"),
        "object": "agent.session.turn",
        "agent_id": agent_id,
        "session_id": session_id,
        "subagent_id": subagent,
        "status": "in_progress",
        "created_at": _CREATED,
        "started_at": _CREATED,
        "completed_at": None,
        "error": None,
        "usage": None,
        "_text": "",
    }


def _openai_turn(entry: dict[str, Any], text: str, *, finished: bool) -> None:
    session = entry["session"]
    agent = session["agent"]
    turns = [_turn(session["id"], agent["id"], None)]
    if agent["multi_agent"]["enabled"]:
        if entry["subagent"] is None:
            entry["subagent"] = new_id("subagent_")
        turns.insert(0, _turn(session["id"], agent["id"], entry["subagent"]))
    session["status"] = "in_progress"
    for turn in turns:
        turn["_text"] = text
        entry["turns"].append(turn)
        created = {"event_id": new_id("evt_"), "session_id": session["id"], "turn_id": turn["id"]}
        entry["events"].append({**created, "turn": public(turn), "type": "agent.session.turn.created"})
    if finished:
        for turn in turns:
            _openai_finish(entry, turn)


def _openai_finish(entry: dict[str, Any], turn: dict[str, Any]) -> None:
    size = count(turn["_text"])
    if turn["subagent_id"]:
        usage = _token_usage(30 + size, 0, 7, 0)
    else:
        usage = _token_usage(50 + size, 10, 20 + size // 2, 5)
    turn.update(status="completed", completed_at=_CREATED + 5, usage=usage)
    session = entry["session"]
    session["usage"] = _add_usage(session["usage"], usage)
    event = {"event_id": new_id("evt_"), "session_id": session["id"], "turn_id": turn["id"]}
    entry["events"].append(
        {**event, "turn": public(turn), "type": "agent.session.turn.completed", "usage": usage}
    )
    if all(t["status"] == "completed" for t in entry["turns"]):
        session["status"] = "idle"
        entry["events"].append(
            {"event_id": new_id("evt_"), "session": dict(session), "type": "agent.session.idle"}
        )


def _openai_advance(entry: dict[str, Any]) -> None:
    """Reading a session's turns or events after an input: its running turns are seen once in progress,
    then finished."""
    with _lock:
        for turn in entry["turns"]:
            if turn["status"] == "in_progress":
                if turn.get("_seen"):
                    _openai_finish(entry, turn)
                else:
                    turn["_seen"] = True


# -- Anthropic /v1/sessions (Managed Agents) -------------------------------------------------------------------


def _anthropic_agent(model: str, name: str) -> dict[str, Any]:
    return {
        "id": new_id("agent_"),
        "type": "agent",
        "name": name,
        "description": None,
        "execution_identity": {"type": "service_account"},
        "mcp_servers": [],
        "model": {"id": model, "effort": "high", "speed": "standard"},
        "multiagent": None,
        "skills": [],
        "system": None,
        "tools": [],
        "version": 1,
    }


def _new_anthropic(model: str, title: str | None) -> dict[str, Any]:
    session: dict[str, Any] = {
        "id": new_id("sesn_"),
        "type": "session",
        "agent": _anthropic_agent(model, "mock agent"),
        "archived_at": None,
        "budget": None,
        "created_at": _TIME,
        "environment_id": "env_mock",
        "metadata": {},
        "outcome_evaluations": [],
        "resources": [],
        "stats": {"active_seconds": 0.0, "duration_seconds": 0.0},
        "status": "idle",
        "title": title,
        "updated_at": _TIME,
        "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0},
        "vault_ids": [],
    }
    primary = _thread(session["id"], session["agent"], None)
    entry: dict[str, Any] = {"session": session, "events": [], "threads": {primary["id"]: primary}}
    entry["thread_events"] = {primary["id"]: entry["events"]}  # the primary thread's events are the session's
    return _keep(_anthropic, session["id"], entry)


def _thread(session_id: str, agent: dict[str, Any], parent: str | None) -> dict[str, Any]:
    return {
        "id": new_id("sthr_"),
        "type": "session_thread",
        "agent": agent,
        "archived_at": None,
        "created_at": _TIME,
        "parent_thread_id": parent,
        "session_id": session_id,
        "stats": None,
        "status": "idle",
        "updated_at": _TIME,
        "usage": None,
    }


def dream_session(model: str) -> str:
    """A session that runs a dream: one model request of its own. Returns its id."""
    entry = _new_anthropic(model, "dream")
    _model_request(entry, entry["events"], 900, 120)
    return str(entry["session"]["id"])


def _model_request(entry: dict[str, Any], events: list[dict[str, Any]], size: int, output: int) -> None:
    start = {"id": new_id("sevt_"), "processed_at": _TIME, "type": "span.model_request_start"}
    usage = {
        "input_tokens": size,
        "output_tokens": output,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": size // 2,
    }
    end = {
        "id": new_id("sevt_"),
        "is_error": False,
        "model_request_start_id": start["id"],
        "model_usage": usage,
        "processed_at": _TIME,
        "type": "span.model_request_end",
    }
    events.extend([start, end])
    total = entry["session"]["usage"]
    total["input_tokens"] += size
    total["output_tokens"] += output
    total["cache_read_input_tokens"] += size // 2
    written = total.setdefault(
        "cache_creation", {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0}
    )
    written["ephemeral_5m_input_tokens"] += 100
    entry["session"]["stats"]["active_seconds"] += 3.5


def answer_anthropic(handler: Any, method: str, rest: list[str], body: dict[str, Any]) -> bool:
    if method == "POST" and not rest:
        agent = body.get("agent")
        model = SESSION_MODEL
        if isinstance(agent, dict) and agent.get("model"):
            given = agent["model"]
            model = str(given.get("id") if isinstance(given, dict) else given)
        return _json(handler, 200, _new_anthropic(model, body.get("title"))["session"])
    if method == "GET" and not rest:
        with _lock:
            data = [e["session"] for e in reversed(list(_anthropic.values()))]
        return _json(handler, 200, {"data": data, "next_page": None, "prev_page": None})
    entry = _anthropic.get(rest[0])
    if entry is None:
        return _missing(handler, "session")
    session, tail = entry["session"], rest[1:]
    if not tail:
        if method == "POST":  # update
            session["title"] = body.get("title", session["title"])
        return _json(handler, 200, session)
    if tail == ["archive"] and method == "POST":
        _terminate(entry)
        return _json(handler, 200, session)
    if tail == ["events"] and method == "POST":
        return _json(handler, 200, {"data": _anthropic_send(entry, body.get("events") or [])})
    if tail == ["events"]:
        return _json(handler, 200, {"data": entry["events"], "next_page": None})
    if tail == ["events", "stream"]:
        return _stream(handler, [(e["type"], e) for e in entry["events"]])
    if tail == ["threads"]:
        return _json(handler, 200, {"data": list(entry["threads"].values()), "next_page": None})
    thread = entry["threads"].get(tail[1]) if tail[0] == "threads" and len(tail) > 1 else None
    if thread is None:
        return _missing(handler, "thread")
    events = entry["thread_events"].get(thread["id"], [])
    if tail[2:] == []:
        return _json(handler, 200, thread)
    if tail[2:] == ["archive"]:
        thread.update(archived_at=_TIME, status="terminated")
        return _json(handler, 200, thread)
    if tail[2:] == ["events"]:
        return _json(handler, 200, {"data": events, "next_page": None})
    if tail[2:] == ["stream"]:
        return _stream(handler, [(e["type"], e) for e in events])
    return _missing(handler, "route")


def _anthropic_send(entry: dict[str, Any], sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """User events: each `user.message` runs a turn (two model requests; "delegate": a child thread too)."""
    echoed = []
    for event in sent:
        recorded = {**event, "id": new_id("sevt_"), "processed_at": _TIME}
        entry["events"].append(recorded)
        echoed.append(recorded)
        if event.get("type") != "user.message":
            continue
        text = _text(event.get("content"))
        size = count(text) + 300
        _model_request(entry, entry["events"], size, 40)
        if "delegate" in text:
            child = _thread(entry["session"]["id"], _anthropic_agent(CHILD_MODEL, "helper"), None)
            child["parent_thread_id"] = next(iter(entry["threads"]))
            entry["threads"][child["id"]] = child
            entry["thread_events"][child["id"]] = []
            _model_request(entry, entry["thread_events"][child["id"]], size // 2, 25)
        _model_request(entry, entry["events"], size + 60, 30)
        reply = {"type": "text", "text": "Done."}
        entry["events"].append(
            {"id": new_id("sevt_"), "type": "agent.message", "content": [reply], "processed_at": _TIME}
        )
        idle = {"id": new_id("sevt_"), "type": "session.status_idle", "processed_at": _TIME}
        entry["events"].append({**idle, "stop_reason": {"type": "end_turn"}})
    return echoed


def _terminate(entry: dict[str, Any]) -> None:
    session = entry["session"]
    session.update(status="terminated", archived_at=_TIME)
    usage = session["usage"]
    usage["active_seconds"] = session["stats"]["active_seconds"]
    usage["list_cost"] = {"amount": str(3 + usage["input_tokens"] // 1000), "currency": "USD"}
