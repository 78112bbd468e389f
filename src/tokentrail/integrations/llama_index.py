"""LlamaIndex: every LLM call an agent workflow makes, attributed to the agent that made it and its tool.

    from tokentrail.integrations import llama_index as tt_llama_index
    tt_llama_index.enable()                 # every LLM, agent and workflow, from now on

Design. LlamaIndex's own observation point is its instrumentation module: the root dispatcher
(`llama_index.core.instrumentation.get_dispatcher()`) hands every span and event to the handlers added
to it, synchronously and in the context of the code that emits them. `enable()` adds two:

- a span handler that remembers, for each open span, the agent it belongs to — a `FunctionAgent` /
  `ReActAgent` running itself (the span's instance), or the agent an `AgentWorkflow` step works for
  (the `current_agent_name` of the step's event) — and the tool it is (a `BaseTool` span's name);
  a span with neither belongs to the last agent seen in its workflow run (a tool step follows the
  step of the agent that asked for the tool);
- an event handler that, at `LLMChatStartEvent` / `LLMCompletionStartEvent`, enters
  `scope(agent=…, tool=…)` (one level per nested agent) and opens a claim (`tokentrail._claims`),
  in the very context the provider SDK call then runs in; at the matching end event (same span id) it
  closes both and records the response's usage (read from `response.raw` with `tokentrail.capture`,
  else LlamaIndex's `prompt_tokens` / `completion_tokens`) only when no instrumented SDK call took the
  claim — one record per call with `instrument()`, this integration, or both.

A call that fails is not recorded (counted under `error_counts["call_errors"]` when nothing else saw
it). Streams are recorded when they are read to their end; OpenAI chat streams report usage only with
`additional_kwargs={"stream_options": {"include_usage": True}}` on `llama_index.llms.openai.OpenAI`
(without it the record is `unknown`, saying so). Importing this module imports llama-index-core.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.span import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index_instrumentation import get_dispatcher
from pydantic import PrivateAttr

from tokentrail._claims import Claim, close_claim, open_claim
from tokentrail._types import Usage
from tokentrail.adapters import capture
from tokentrail.adapters.hooks import count_error, resolve_tracker
from tokentrail.scope import ScopeEntry, enter_scope, exit_scope, scope

__all__ = ["disable", "enable", "usage_from_llama_response"]

OWNER = "llama-index"

logger = logging.getLogger("tokentrail.integrations")

_lock = threading.Lock()
_handlers: tuple[_AttributionSpans, _CallEvents] | None = None

# LlamaIndex LLM classes whose provider name is not their lowercased class name
_PROVIDERS = {"azureopenai": "azure", "openailike": "openai", "bedrockconverse": "bedrock"}


def enable(tracker: Any = None) -> bool:
    """Track every LlamaIndex LLM call from now on (LLMs and agents built before included); idempotent.

    `tracker` receives the records (None: `tokentrail.get_tracker()` at each call). Returns True.
    """
    global _handlers
    with _lock:
        if _handlers is not None:
            _handlers[1].tracker = tracker
            return True
        spans = _AttributionSpans()
        events = _CallEvents(spans=spans, tracker=tracker)
        spans._on_drop = events.dropped
        root = get_dispatcher()
        root.add_span_handler(spans)
        root.add_event_handler(events)
        _handlers = (spans, events)
        return True


def disable() -> None:
    """Remove tokentrail's handlers from LlamaIndex's root dispatcher (calls in flight still close)."""
    global _handlers
    with _lock:
        if _handlers is None:
            return
        spans, events = _handlers
        root = get_dispatcher()
        root.span_handlers = [h for h in root.span_handlers if h is not spans]
        root.event_handlers = [h for h in root.event_handlers if h is not events]
        _handlers = None


def enabled() -> bool:
    """Whether `enable()` is in force."""
    return _handlers is not None


# -- attribution: who each span belongs to ----------------------------------------------------------


class _AgentSpan(BaseSpan):
    """A span with the agent it works for and the tool it is (None when it is neither)."""

    agent: str | None = None
    tool: str | None = None
    root_id: str | None = None
    last_agent: str | None = None  # on a root span: the agent whose step ran last in this run


class _AttributionSpans(BaseSpanHandler[_AgentSpan]):
    """Keeps the agent and tool of each open span, for the LLM calls started inside them."""

    _on_drop: Callable[[str], None] | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "TokentrailAttributionSpans"

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> _AgentSpan | None:
        try:
            parent = self._open(parent_span_id)
            root = self._open(parent.root_id) if parent is not None else None
            agent = _agent_of(instance, bound_args)
            if agent is not None and root is not None:
                root.last_agent = agent
            elif agent is None and root is not None:
                agent = root.last_agent
            return _AgentSpan(
                id_=id_,
                parent_id=parent_span_id,
                agent=agent,
                tool=_tool_of(instance),
                root_id=root.id_ if root is not None else id_,
                last_agent=agent,
            )
        except Exception:
            logger.debug("tokentrail could not read a LlamaIndex span", exc_info=True)
            return None

    def prepare_to_exit_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> _AgentSpan | None:
        return self._open(id_)

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> _AgentSpan | None:
        if self._on_drop is not None:
            self._on_drop(id_)  # a non-streamed LLM call that raised ends with its span
        return self._open(id_)

    def _open(self, span_id: str | None) -> _AgentSpan | None:
        span = self.open_spans.get(span_id) if span_id else None
        return span if isinstance(span, _AgentSpan) else None

    def attribution(self, span_id: str | None) -> tuple[list[str], str | None]:
        """The agents (outermost first, one per nesting level) and the nearest tool above `span_id`."""
        agents: list[str] = []
        tool: str | None = None
        seen: set[str] = set()
        span = self._open(span_id)
        while span is not None and span.id_ not in seen:
            seen.add(span.id_)
            if span.agent is not None and (not agents or agents[-1] != span.agent):
                agents.append(span.agent)
            if tool is None and span.tool is not None:
                tool = span.tool
            span = self._open(span.parent_id)
        agents.reverse()
        return agents, tool


def _agent_of(instance: Any, bound_args: inspect.BoundArguments) -> str | None:
    """The agent a span works for: a workflow agent running itself, or an agent step's event."""
    from llama_index.core.agent.workflow.base_agent import BaseWorkflowAgent

    if isinstance(instance, BaseWorkflowAgent):
        return _name(getattr(instance, "name", None))
    for value in bound_args.arguments.values():
        name = _name(getattr(value, "current_agent_name", None))
        if name is not None:
            return name
    return None


def _tool_of(instance: Any) -> str | None:
    from llama_index.core.tools.types import BaseTool

    if not isinstance(instance, BaseTool):
        return None
    return _name(getattr(instance.metadata, "name", None))


def _name(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# -- the calls: claims, scopes, records ---------------------------------------------------------------


@dataclass
class _Pending:
    """An LLM call between its start and end events."""

    claim: Claim
    scope_entries: list[ScopeEntry]
    started: float
    model_dict: dict[str, Any] = field(default_factory=dict)


class _CallEvents(BaseEventHandler):
    """Opens a claim and the agent's scope at each LLM start event; records at the end unless taken."""

    spans: _AttributionSpans
    tracker: Any = None
    _pending: dict[str, _Pending] = PrivateAttr(default_factory=dict)
    _pending_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "TokentrailCallEvents"

    def handle(self, event: BaseEvent, **kwargs: Any) -> Any:
        try:
            if isinstance(event, (LLMChatStartEvent, LLMCompletionStartEvent)):
                self._start(event)
            elif isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
                self._end(event.span_id, event.response)
            elif isinstance(event, ExceptionEvent):
                self._fail(event.span_id)
        except Exception:
            logger.debug("tokentrail could not handle a LlamaIndex event", exc_info=True)
        return None

    def _start(self, event: LLMChatStartEvent | LLMCompletionStartEvent) -> None:
        span_id = event.span_id
        if span_id is None:
            return
        agents, tool = self.spans.attribution(span_id)
        entries = _enter_agents(agents, tool)
        pending = _Pending(open_claim(OWNER), entries, time.perf_counter(), dict(event.model_dict or {}))
        with self._pending_lock:
            self._pending[span_id] = pending

    def _end(self, span_id: str | None, response: Any) -> None:
        pending = self._pop(span_id)
        if pending is None:
            return
        try:
            if not pending.claim.taken:
                self._record(pending, response)
        finally:
            _close(pending)

    def _fail(self, span_id: str | None) -> None:
        pending = self._pop(span_id)
        if pending is None:
            return
        if not pending.claim.taken:
            count_error(self.tracker)
        _close(pending)

    def dropped(self, span_id: str) -> None:
        """A call's span ended in an exception (a non-streamed call that raised)."""
        try:
            self._fail(span_id)
        except Exception:
            logger.debug("tokentrail could not close a failed LlamaIndex call", exc_info=True)

    def _pop(self, span_id: str | None) -> _Pending | None:
        if span_id is None:
            return None
        with self._pending_lock:
            return self._pending.pop(span_id, None)

    def _record(self, pending: _Pending, response: Any) -> None:
        duration_ms = (time.perf_counter() - pending.started) * 1000.0
        usage, model, provider = _read(response, pending.model_dict)
        resolve_tracker(self.tracker).record(usage, model, provider, duration_ms=duration_ms)


def _enter_agents(agents: list[str], tool: str | None) -> list[ScopeEntry]:
    """Enter one scope per agent level (the tool on the innermost), to leave innermost first."""
    if not agents and tool is None:
        return []
    levels: list[str | None] = list(agents) or [None]
    return [
        enter_scope(scope(agent=agent, tool=tool if depth == len(levels) - 1 else None))
        for depth, agent in enumerate(levels)
    ]


def _close(pending: _Pending) -> None:
    """Close the call's claim and scope (a call started inside another took the outer claim at its start)."""
    close_claim(pending.claim)
    for entry in reversed(pending.scope_entries):
        exit_scope(entry)
    pending.scope_entries = []


def usage_from_llama_response(response: Any) -> Usage:
    """The usage a LlamaIndex `ChatResponse` / `CompletionResponse` carries (its raw provider response)."""
    return _read(response, {})[0]


def _read(response: Any, model_dict: dict[str, Any]) -> tuple[Usage, str | None, str | None]:
    """Usage, model and provider of a finished call, from LlamaIndex's response and the LLM's payload."""
    provider = _provider(model_dict)
    raw = getattr(response, "raw", None)
    model = model_dict.get("model") if isinstance(model_dict.get("model"), str) else None
    if raw is not None:
        captured = capture(raw, provider)
        if captured.usage.status.value != "unknown":
            return captured.usage, captured.model or model, captured.provider
    counted = _counts(getattr(response, "additional_kwargs", None))
    if counted is not None:
        return counted, model, provider
    if raw is not None:
        return captured.usage, captured.model or model, provider
    return Usage.unknown("LlamaIndex's response carried no raw provider response"), model, provider


def _counts(extra: object) -> Usage | None:
    """LlamaIndex's own reading of the provider's counts (`prompt_tokens` / `completion_tokens`)."""
    if not isinstance(extra, dict):
        return None
    prompt, completion = extra.get("prompt_tokens"), extra.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt, completion)


def _provider(model_dict: dict[str, Any]) -> str | None:
    name = model_dict.get("class_name")
    if not isinstance(name, str) or not name:
        return None
    key = name.lower().removesuffix("_llm")
    return _PROVIDERS.get(key, key)
