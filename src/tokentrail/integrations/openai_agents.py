"""OpenAI Agents SDK (`openai-agents`): every model call a run makes, recorded once, attributed to the
Agent that made it.

    from tokentrail.integrations import openai_agents
    openai_agents.enable(tracker)          # once; adds a tracing processor beside the SDK's own

What a record gets: `agent` = the `Agent.name` whose turn made the call (a handoff's specialist gets its
own calls; an agent run as a tool sits under its caller in the hierarchy path, outer/inner); `tool` = the
function tool (or agent-as-tool) the call was made inside; `session` = the run's trace `group_id`, else
its `trace_id` (a session the caller set with `tt.scope(session=…)` wins over a generated trace id).

Design: the SDK's own observation point is its tracing. A `TracingProcessor` is called synchronously by
`span.start()` / `span.finish()`, in the context of the code that starts and finishes the span: the run
loop for an agent span, the tool's task for a function span, the model call itself for a Responses or
Chat Completions (generation) span. So an agent or function span entering a tokentrail scope at its
start scopes everything recorded under it (instrumented SDK records included), and a model span opens
an exactly-once claim in the very context the provider call runs in: the call is recorded from the
span's usage only when no instrumented layer (`instrument()` / `wrap()`) took the claim. `RunHooks`
cannot do this (the SDK runs them in tasks of their own, so a scope or claim set there is lost), and a
model wrapper would have to be passed to every agent or run.

Limits: with tracing disabled (`set_tracing_disabled(True)`, `RunConfig(tracing_disabled=True)` or
`OPENAI_AGENTS_DISABLE_TRACING=1`) the SDK calls no processor at all: this integration then sees
nothing (`instrument()` still records every call, attributed only to the caller's own scope). To keep
attribution without sending traces to OpenAI, keep tracing on and drop the exporter:
`agents.set_trace_processors([])` before `enable()`. With `trace_include_sensitive_data=False` a
Responses span carries no model name, so a call only this integration records is unpriced (under
`instrument()` the SDK layer records it with its model). A request the SDK retries inside one model
span is one record here (the span's final usage), one per request under `instrument()`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from agents.tracing import (
    AgentSpanData,
    FunctionSpanData,
    GenerationSpanData,
    ResponseSpanData,
    Span,
    Trace,
    TracingProcessor,
    add_trace_processor,
    get_current_trace,
    get_trace_provider,
)

from tokentrail._claims import Claim, close_claim, open_claim
from tokentrail._types import Usage
from tokentrail.scope import current_scope, enter_scope, exit_scope, scope

__all__ = ["TokentrailProcessor", "disable", "enable", "is_enabled"]

logger = logging.getLogger("tokentrail.integrations")

OWNER = "openai-agents"


@dataclass(slots=True)
class _Open:
    """What a started span left for its end: the scope to leave, or the claim and start time of a call."""

    scope_token: Any = None
    claim: Claim | None = None
    started: float = 0.0


class TokentrailProcessor(TracingProcessor):
    """Scopes agent and function spans; records model spans no instrumented SDK call took."""

    def __init__(self) -> None:
        self.tracker: Any = None  # None: `tokentrail.get_tracker()` when a call is recorded
        self.active = False
        self.added = False  # added to a trace provider whose processor list cannot be read
        self._open: dict[str, _Open] = {}

    def on_trace_start(self, trace: Trace) -> None:
        """Nothing to do: the session is read from the trace current where an agent span starts."""

    def on_trace_end(self, trace: Trace) -> None:
        """Nothing to do: every span this processor opened is closed by its own end."""

    def on_span_start(self, span: Span[Any]) -> None:
        if not self.active:
            return
        try:
            self._start(span)
        except Exception:
            logger.debug("tokentrail could not follow an Agents SDK span start", exc_info=True)
            _count_error(self.tracker)

    def on_span_end(self, span: Span[Any]) -> None:
        opened = self._open.pop(span.span_id, None)
        if opened is None:
            return
        try:
            self._end(span, opened)
        except Exception:
            logger.debug("tokentrail could not follow an Agents SDK span end", exc_info=True)
            _count_error(self.tracker)

    def shutdown(self) -> None:
        """Nothing buffered: records are handed to the tracker as calls end."""

    def force_flush(self) -> None:
        """Nothing buffered: records are handed to the tracker as calls end."""

    def _start(self, span: Span[Any]) -> None:
        data = span.span_data
        if isinstance(data, (ResponseSpanData, GenerationSpanData)):
            self._open[span.span_id] = _Open(claim=open_claim(OWNER), started=time.perf_counter())
        elif isinstance(data, AgentSpanData):
            entered = scope(agent=data.name, session=_session(span))
            self._open[span.span_id] = _Open(scope_token=enter_scope(entered))
        elif isinstance(data, FunctionSpanData):
            self._open[span.span_id] = _Open(scope_token=enter_scope(scope(tool=data.name)))

    def _end(self, span: Span[Any], opened: _Open) -> None:
        if opened.claim is None:
            exit_scope(opened.scope_token)
            return
        close_claim(opened.claim)
        if opened.claim.taken:
            return  # an instrumented SDK call recorded it, with this span's scope
        usage = _usage(span.span_data.usage)
        if usage is None:
            if span.error is not None:
                return  # the request failed: the provider reported nothing billable
            usage = Usage.unknown("the Agents SDK model span ended without usage")
        duration_ms = (time.perf_counter() - opened.started) * 1000.0
        _resolve_tracker(self.tracker).record(usage, _model(span.span_data), duration_ms=duration_ms)


def _session(span: Span[Any]) -> str | None:
    """The run's group id, else its trace id unless the caller already named a session."""
    trace = get_current_trace()
    group_id = getattr(trace, "group_id", None) if trace is not None else None
    if isinstance(group_id, str) and group_id:
        return group_id
    if current_scope().session is not None:
        return None
    return span.trace_id or None


def _usage(reported: Any) -> Usage | None:
    """tokentrail's Usage from a span's usage dict (the SDK's own per-call numbers); None when absent or
    all zero (the SDK's placeholder for a response that reported no usage)."""
    if not isinstance(reported, dict) or not (reported.get("input_tokens") or reported.get("output_tokens")):
        return None
    input_details = reported.get("input_tokens_details") or {}
    output_details = reported.get("output_tokens_details") or {}
    return Usage(
        input_tokens=int(reported.get("input_tokens") or 0),
        output_tokens=int(reported.get("output_tokens") or 0),
        cache_read_tokens=int(input_details.get("cached_tokens") or 0),
        cache_write_tokens=int(input_details.get("cache_write_tokens") or 0),
        reasoning_tokens=int(output_details.get("reasoning_tokens") or 0),
    )


def _model(data: Any) -> str | None:
    """The model a span names: a generation span's `model`, a Responses span's response (when kept)."""
    if isinstance(data, GenerationSpanData):
        return data.model
    response = getattr(data, "response", None)
    model = getattr(response, "model", None)
    return model if isinstance(model, str) else None


def _resolve_tracker(tracker: Any) -> Any:
    if tracker is not None:
        return tracker
    from tokentrail.tracker import get_tracker

    return get_tracker()


def _count_error(tracker: Any) -> None:
    from tokentrail.adapters.hooks import count_error

    count_error(tracker)


_PROCESSOR = TokentrailProcessor()
_LOCK = threading.Lock()


def enable(tracker: Any = None) -> TokentrailProcessor:
    """Follow every Agents SDK run from now on (idempotent); `tracker` None: the process default.

    Adds one processor to the SDK's trace provider, beside the processors already there (the OpenAI
    exporter, the user's own); added again if `set_trace_processors` has since replaced the list.
    """
    with _LOCK:
        _PROCESSOR.tracker = tracker
        _PROCESSOR.active = True
        if not _registered(_PROCESSOR):
            add_trace_processor(_PROCESSOR)
            _PROCESSOR.added = True
    return _PROCESSOR


def disable() -> None:
    """Stop following runs (the processor stays registered, inert: the SDK offers no way to remove one)."""
    with _LOCK:
        _PROCESSOR.active = False
        _PROCESSOR.tracker = None


def is_enabled() -> bool:
    """Whether runs are followed now."""
    return _PROCESSOR.active and _registered(_PROCESSOR)


def _registered(processor: TokentrailProcessor) -> bool:
    """Whether the global trace provider calls `processor` (read from the SDK's default provider)."""
    multi = getattr(get_trace_provider(), "_multi_processor", None)
    processors = getattr(multi, "_processors", None)
    if not isinstance(processors, tuple):
        return processor.added  # a provider of the user's own: trust our note
    return any(p is processor for p in processors)
