"""Usage of hosted agent sessions: OpenAI `beta.agents.sessions` and Anthropic Managed Agents `beta.sessions`.

A session runs turns server-side for as long as it lives, and its own `usage` is a running total
(OpenAI: best effort, "may change"; Anthropic: cumulative until the session is `terminated`, its
`list_cost` including runtime). That total is never recorded. What is recorded is each unit of work as
the caller reads it, once per id however often it is read (`_instrument_stainless._Once`):

- OpenAI: each finished turn (`completed`, `failed`, `cancelled`), from the `agent.session.turn.*` events
  of a session's event stream (streamed creation, `events.stream`, the `sessions.stream` helper) or from
  `turns` / `subagents.turns` (list, retrieve); its id is the turn id. A root turn runs the session's
  agent, whose model is in the session object (`agent.model`); a subagent's model is not reported.
- Anthropic: each model request, from the `span.model_request_end` events of a session's or a thread's
  events (list or stream); its id is the event id. A session's own events are its primary thread's,
  run by the session's agent (`agent.model`); a thread runs its own agent (`agent.model`).

Neither turn nor event names its model, so the session (and thread) objects the process sees — create,
retrieve, update, list, a streamed creation's `agent.session.created` — are remembered (id -> model, a
bounded map). Work of a session or thread never seen is recorded with the model unknown: counted, not
priced, with the reason. Anthropic session runtime is billed apart from tokens and is not in the price
catalog: a session seen `terminated` is one more record without tokens, unpriced, its active seconds and
list cost in the reason. A dream runs in a session of its own (`dream.session_id`), and the dream's usage
is recorded with the dream (`runs.dream`): that session's events and runtime record nothing more.

Sources: openai-python 3.57.0 `types/beta/agent_session.py`, `types/beta/agents/sessions/turn.py`,
`types/beta/agent_session_turn_completed_event.py`, `types/beta/token_usage.py`;
https://developers.openai.com/api/docs/guides/agents-api/observability. anthropic-sdk-python 2.13.0
`types/beta/beta_managed_agents_session.py`, `beta_managed_agents_session_usage.py`,
`types/beta/sessions/beta_managed_agents_span_model_request_end_event.py`,
`beta_managed_agents_span_model_usage.py`, `beta_managed_agents_session_thread.py`;
https://platform.claude.com/docs/en/managed-agents/multiagent ("the primary thread ... is the same as the
session-level event stream"), https://platform.claude.com/docs/en/managed-agents/session-observability.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from decimal import Decimal

from tokentrail._types import Usage, UsageStatus
from tokentrail.adapters import anthropic as _anthropic
from tokentrail.adapters import openai as _openai
from tokentrail.adapters._base import Captured, Fields, Scoped, get_field, text_value

__all__ = ["anthropic", "openai", "remember_dream_session"]

_REMEMBERED = 16_384  # sessions and threads whose model is kept (the least recently seen are forgotten)


class _Bounded:
    """A thread-safe map keeping its most recently used `limit` entries."""

    __slots__ = ("entries", "limit", "lock")

    def __init__(self, limit: int) -> None:
        self.entries: OrderedDict[str, tuple[str, Mapping[str, str]]] = OrderedDict()
        self.limit = limit
        self.lock = threading.Lock()

    def put(self, key: str, model: str, context: Mapping[str, str]) -> None:
        with self.lock:
            self.entries[key] = (model, context)
            self.entries.move_to_end(key)
            if len(self.entries) > self.limit:
                self.entries.popitem(last=False)

    def get(self, key: str) -> tuple[str, Mapping[str, str]] | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found


_MODELS = _Bounded(_REMEMBERED)  # "openai:sess_…", "anthropic:sesn_…", "anthropic:sthr_…" -> model
_DREAMS = _Bounded(_REMEMBERED)  # "sesn_…" of a session that runs a dream -> the dream id


def remember_dream_session(session_id: str, dream_id: str) -> None:
    """`session_id` runs the dream `dream_id`, whose usage is recorded with the dream."""
    _DREAMS.put(session_id, dream_id, {})


def _items(response: object) -> list[object] | None:
    """The objects of a listing page (`data`), or None when `response` is no listing."""
    data = get_field(response, "data")
    return list(data) if isinstance(data, (list, tuple)) else None


# -- OpenAI: beta.agents.sessions ----------------------------------------------------------------------------

_TURN_FINAL = frozenset({"completed", "failed", "cancelled"})
_TURN_EVENTS = frozenset(f"agent.session.turn.{status}" for status in _TURN_FINAL)
_PRICED_TIERS = frozenset({"flex", "priority"})  # an explicit tier policy is the tier that serves


def openai(response: object, provider: str = "openai") -> tuple[Captured, ...]:
    """A session, turn, listing page or session event: one capture per finished turn it shows, none for a
    session (its model is remembered for its turns)."""
    kind = text_value(get_field(response, "object")) or text_value(get_field(response, "type"))
    if kind == "agent.session":
        _remember_openai(response)
        return ()
    if kind == "agent.session.created":
        _remember_openai(get_field(response, "session"))
        return ()
    if kind == "agent.session.turn":
        return (_openai_turn(response, None, provider),)
    if kind in _TURN_EVENTS:
        turn = get_field(response, "turn")
        return (_openai_turn(turn, get_field(response, "usage"), provider),) if turn is not None else ()
    listed = _items(response)
    if listed is None:
        return ()
    return tuple(captured for item in listed for captured in openai(item, provider))


def _remember_openai(session: object) -> None:
    session_id = text_value(get_field(session, "id"))
    agent = get_field(session, "agent")
    model = text_value(get_field(agent, "model"))
    if session_id and model:
        tier = text_value(get_field(agent, "service_tier"))
        context = {"service_tier": tier} if tier in _PRICED_TIERS else {}
        _MODELS.put(f"openai:{session_id}", model, context)


def _openai_turn(turn: object, event_usage: object, provider: str) -> Captured:
    """One turn: nothing until it has finished; then its usage (the event's, "by the root agent during the
    turn", else the turn's own) at the model of the session's agent."""
    turn_id = text_value(get_field(turn, "id"))
    status = text_value(get_field(turn, "status"))
    if status not in _TURN_FINAL:
        reason = f"the turn is {status}: usage is reported when it finishes"
        return Captured(Usage.unknown(reason), None, provider, response_id=turn_id, finished=False)
    raw = event_usage if event_usage is not None else get_field(turn, "usage")
    session_id = text_value(get_field(turn, "session_id"))
    subagent = text_value(get_field(turn, "subagent_id"))
    model: str | None = None
    context: Mapping[str, str] = {}
    why = None
    if subagent:
        why = f"subagent {subagent}'s turn: the API reports no model for a subagent"
    else:
        found = _MODELS.get(f"openai:{session_id}")
        if found is None:
            why = f"session {session_id} was not seen by this process: its agent's model is unknown"
        else:
            model, context = found
    if raw is None:
        usage = Usage.unknown(f"the {status} turn reports no usage (null when its counts are incomplete)")
    else:
        usage = _openai.responses_usage(Fields(raw, "usage"))
        if why is not None:
            usage = dataclasses.replace(usage, reason=why)
    return Captured(usage, model, provider, dict(context), response_id=turn_id)


# -- Anthropic: beta.sessions (Managed Agents) ---------------------------------------------------------------

_PATH = re.compile(r"/sessions/(?P<session>[^/]+)(?:/threads/(?P<thread>[^/]+))?")


def anthropic(response: object, provider: str = "anthropic") -> tuple[Captured, ...]:
    """A session, thread, listing page or session event: one capture per finished model request it shows,
    and for a terminated session its runtime; the sessions and threads themselves are remembered."""
    path = ""
    if isinstance(response, Scoped):
        path, response = response.path, response.body
    kind = text_value(get_field(response, "type"))
    if kind == "session":
        return _anthropic_session(response, provider)
    if kind == "session_thread":
        _remember_thread(response)
        return ()
    if kind == "span.model_request_end":
        return _model_request(response, path, provider)
    listed = _items(response)
    if listed is None:
        return ()
    return tuple(captured for item in listed for captured in anthropic(Scoped(path, item), provider))


def _agent_model(agent: object) -> str | None:
    """An agent's model: `model.id` (an agent), or `model` itself (an advisor)."""
    model = get_field(agent, "model")
    return text_value(model) or text_value(get_field(model, "id"))


def _speed(agent: object) -> Mapping[str, str]:
    speed = text_value(get_field(get_field(agent, "model"), "speed"))
    return {"speed": speed} if speed == "fast" else {}


def _remember_thread(thread: object) -> None:
    thread_id = text_value(get_field(thread, "id"))
    agent = get_field(thread, "agent")
    model = _agent_model(agent)
    if thread_id and model:
        _MODELS.put(f"anthropic:{thread_id}", model, _speed(agent))


def _anthropic_session(session: object, provider: str) -> tuple[Captured, ...]:
    session_id = text_value(get_field(session, "id")) or ""
    agent = get_field(session, "agent")
    model = _agent_model(agent)
    if session_id and model:
        _MODELS.put(f"anthropic:{session_id}", model, _speed(agent))
    if text_value(get_field(session, "status")) != "terminated" or _DREAMS.get(session_id) is not None:
        return ()
    usage = get_field(session, "usage")
    seconds = get_field(usage, "active_seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
        return ()
    reason = (
        f"session runtime: {seconds:g} active seconds, billed apart from tokens and not in the price "
        "catalog (its tokens are recorded per model request)"
    )
    cost = get_field(usage, "list_cost")
    amount, currency = text_value(get_field(cost, "amount")), text_value(get_field(cost, "currency"))
    if amount and amount.isdigit() and currency:
        shown = f"${Decimal(amount) / 100}" if currency == "USD" else f"{amount} {currency} minor units"
        reason += f"; the session's list cost, tokens and runtime, was {shown}"
    runtime = Usage(requests=0, status=UsageStatus.UNKNOWN, reason=reason)
    return (Captured(runtime, model, provider, response_id=f"{session_id}/runtime"),)


def _model_request(event: object, path: str, provider: str) -> tuple[Captured, ...]:
    """One model request of the session or thread at `path`, at its agent's model; nothing for a dream's."""
    found = _PATH.search(path)
    session_id = found.group("session") if found else None
    thread_id = found.group("thread") if found else None
    if session_id and _DREAMS.get(session_id) is not None:
        return ()  # the dream's usage is recorded with the dream
    raw = get_field(event, "model_usage")
    if raw is None:
        return ()
    usage = _anthropic.message_usage(Fields(raw, "model_usage"))
    key = thread_id or session_id
    remembered = _MODELS.get(f"anthropic:{key}") if key else None
    model: str | None = None
    context: dict[str, str] = {}
    if remembered is None:
        where = f"thread {thread_id}" if thread_id else f"session {session_id}"
        reason = f"{where} was not seen by this process: the model of its agent is unknown"
        usage = dataclasses.replace(usage, reason=reason)
    else:
        model, remembered_context = remembered
        context.update(remembered_context)
    speed = text_value(get_field(raw, "speed"))
    if speed:  # the tier the request actually ran at
        context["speed"] = speed
    return (Captured(usage, model, provider, context, response_id=text_value(get_field(event, "id"))),)
