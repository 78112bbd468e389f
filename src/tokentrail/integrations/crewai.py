"""CrewAI: every LLM call a crew makes, attributed to the agent (its role) and the task it works on.

    from tokentrail.integrations import crewai as tt_crewai
    tt_crewai.enable()                      # every crew, agent and LLM, from now on

Design. CrewAI has two observation points, and each does half the job:

- its interception hooks (`crewai.hooks`: `PRE_MODEL_CALL`, `POST_MODEL_CALL`, `PRE_TOOL_CALL`,
  `POST_TOOL_CALL`) run synchronously in the thread and context that then calls the provider SDK,
  and know the agent and task, but not the call's usage;
- its event bus (`crewai.events.crewai_event_bus`) reports each call's usage (`LLMCallCompletedEvent`),
  but runs handlers on a thread pool, in a copy of the emitting context.

So before each model call a hook enters `scope(agent=<role>, tags=["task:<name>"])` and opens a claim
(`tokentrail._claims`) in the caller's context; the completed event's handler, whose context is a copy
of that one, records CrewAI's reported usage only when no instrumented SDK call took the claim — one
record per call with `instrument()`, this integration, or both — and with the scope the hook entered.
The claim and scope close at the next of: the post-model hook, a tool call (whose own scope names the
tool, for calls made inside it), the agent's next model call. CrewAI runs no post-model hook after a
tool-call response or a failed call, hence those.

Records from the event bus land on its thread pool; `Crew.kickoff` flushes the bus before it returns,
so they are there when it returns (after a bare `llm.call`, `crewai_event_bus.flush()`). A crew whose
agents share one `LLM` instance reports each call's tokens once per agent in `crew.usage_metrics`
(CrewAI sums the shared instance's counters per agent); tokentrail records each call once. Importing this
module imports crewai.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from crewai.events.base_events import BaseEvent
from crewai.events.event_bus import crewai_event_bus
from crewai.events.types.llm_events import LLMCallCompletedEvent, LLMCallFailedEvent
from crewai.hooks.dispatch import InterceptionPoint
from crewai.hooks.dispatch import register as register_hook
from crewai.hooks.dispatch import unregister as unregister_hook
from crewai.types.usage_metrics import UsageMetrics

from tokentrail._claims import Claim, close_claim, open_claim
from tokentrail._types import Usage
from tokentrail.adapters.hooks import count_error, resolve_tracker
from tokentrail.scope import ScopeEntry, enter_scope, exit_scope, reentered, scope

__all__ = ["disable", "enable", "enabled", "usage_from_crewai"]

OWNER = "crewai"

logger = logging.getLogger("tokentrail.integrations")

_lock = threading.Lock()
_enabled = False
_tracker: Any = None


@dataclass
class _Window:
    """What a hook opened in the caller's context: the model call's claim, or a tool's scope."""

    claim: Claim | None
    scope_entry: ScopeEntry
    started: float
    token: contextvars.Token[_Window | None] | None = None


_MODEL_CALL: contextvars.ContextVar[_Window | None] = contextvars.ContextVar(
    "tokentrail_crewai_model_call", default=None
)
_TOOL_CALL: contextvars.ContextVar[_Window | None] = contextvars.ContextVar(
    "tokentrail_crewai_tool_call", default=None
)


def enable(tracker: Any = None) -> bool:
    """Track every CrewAI LLM call from now on; idempotent. Returns True.

    `tracker` receives the records (None: `tokentrail.get_tracker()` at each call).
    """
    global _enabled, _tracker
    with _lock:
        _tracker = tracker
        if _enabled:
            return True
        register_hook(InterceptionPoint.EXECUTION_START, _attach_to_crew)
        register_hook(InterceptionPoint.PRE_MODEL_CALL, _before_model_call)
        register_hook(InterceptionPoint.POST_MODEL_CALL, _after_model_call)
        register_hook(InterceptionPoint.PRE_TOOL_CALL, _before_tool_call)
        register_hook(InterceptionPoint.POST_TOOL_CALL, _after_tool_call)
        crewai_event_bus.register_handler(LLMCallCompletedEvent, _on_completed)
        crewai_event_bus.register_handler(LLMCallFailedEvent, _on_failed)
        _enabled = True
        return True


def disable() -> None:
    """Remove tokentrail's hooks and event handlers from CrewAI."""
    global _enabled
    with _lock:
        if not _enabled:
            return
        unregister_hook(InterceptionPoint.EXECUTION_START, _attach_to_crew)
        unregister_hook(InterceptionPoint.PRE_MODEL_CALL, _before_model_call)
        unregister_hook(InterceptionPoint.POST_MODEL_CALL, _after_model_call)
        unregister_hook(InterceptionPoint.PRE_TOOL_CALL, _before_tool_call)
        unregister_hook(InterceptionPoint.POST_TOOL_CALL, _after_tool_call)
        crewai_event_bus.off(LLMCallCompletedEvent, _on_completed)
        crewai_event_bus.off(LLMCallFailedEvent, _on_failed)
        _enabled = False


def enabled() -> bool:
    """Whether `enable()` is in force."""
    return _enabled


# -- hooks: run in the caller's context --------------------------------------------------------------


def _attach_to_crew(context: Any) -> None:
    """A kickoff starts: agents whose executor predates `enable()` get the model-call hooks too.

    CrewAI copies the global model-call hooks into each agent's executor when it builds it, and keeps
    the executor across kickoffs; without this an agent that ran before `enable()` would bypass them.
    """
    try:
        for agent in getattr(getattr(context, "crew", None), "agents", None) or ():
            executor = getattr(agent, "agent_executor", None)
            _add_once(getattr(executor, "before_llm_call_hooks", None), _before_model_call)
            _add_once(getattr(executor, "after_llm_call_hooks", None), _after_model_call)
    except Exception:
        logger.debug("tokentrail could not attach to a CrewAI crew's agents", exc_info=True)


def _add_once(hooks: Any, hook: Any) -> None:
    if isinstance(hooks, list) and hook not in hooks:
        hooks.append(hook)


def _before_model_call(context: Any) -> None:
    """Open the call's claim and the agent's scope where the provider SDK call will run."""
    try:
        _close(_MODEL_CALL)  # the previous call of this agent ended without a post hook (tool call)
        attribution = scope(agent=_role(context), tags=_task_tags(getattr(context, "task", None)))
        window = _Window(open_claim(OWNER), enter_scope(attribution), time.perf_counter())
        window.token = _MODEL_CALL.set(window)
    except Exception:
        logger.debug("tokentrail could not open a CrewAI model call", exc_info=True)


def _after_model_call(context: Any) -> None:
    try:
        _close(_MODEL_CALL)
    except Exception:
        logger.debug("tokentrail could not close a CrewAI model call", exc_info=True)


def _before_tool_call(context: Any) -> None:
    """A tool runs: the model call that asked for it is over; calls made inside carry the tool."""
    try:
        _close(_MODEL_CALL)
        _close(_TOOL_CALL)
        tool = getattr(context, "tool_name", None)
        attribution = scope(
            agent=_role(context),
            tool=tool if isinstance(tool, str) and tool else None,
            tags=_task_tags(getattr(context, "task", None)),
        )
        window = _Window(None, enter_scope(attribution), time.perf_counter())
        window.token = _TOOL_CALL.set(window)
    except Exception:
        logger.debug("tokentrail could not open a CrewAI tool call", exc_info=True)


def _after_tool_call(context: Any) -> None:
    try:
        _close(_TOOL_CALL)
    except Exception:
        logger.debug("tokentrail could not close a CrewAI tool call", exc_info=True)


def _close(var: contextvars.ContextVar[_Window | None]) -> None:
    """Close the window `var` holds in this context (nothing when none is open here)."""
    window = var.get()
    if window is None:
        return
    if window.claim is not None:
        close_claim(window.claim)
    exit_scope(window.scope_entry)
    if window.token is not None:
        try:
            var.reset(window.token)
        except ValueError:  # opened in another context: nothing of it to undo here
            var.set(None)


def _role(context: Any) -> str | None:
    role = getattr(getattr(context, "agent", None), "role", None)
    return role if isinstance(role, str) and role else None


def _task_tags(task: Any) -> list[str] | None:
    name = getattr(task, "name", None)
    return [f"task:{name}"] if isinstance(name, str) and name else None


# -- events: run on CrewAI's thread pool, in a copy of the caller's context ---------------------------


def _on_completed(source: Any, event: BaseEvent) -> None:
    """Record the call unless an instrumented SDK call took its claim (and so recorded it)."""
    if not isinstance(event, LLMCallCompletedEvent):
        return
    try:
        window = _MODEL_CALL.get()  # the pre-model hook's, as this copy of the caller's context saw it
        if window is not None and window.claim is not None and window.claim.taken:
            return
        duration_ms = (time.perf_counter() - window.started) * 1000.0 if window is not None else None
        provider = getattr(source, "provider", None)
        with contextlib.ExitStack() as stack:
            if window is not None:  # the hook's scope may have ended already: record with what it said
                stack.enter_context(reentered(window.scope_entry))
            resolve_tracker(_tracker).record(
                usage_from_crewai(event.usage),
                event.model,
                provider if isinstance(provider, str) else None,
                duration_ms=duration_ms,
            )
    except Exception:
        logger.debug("tokentrail could not record a CrewAI call", exc_info=True)


def _on_failed(source: Any, event: BaseEvent) -> None:
    window = _MODEL_CALL.get()
    if window is None or window.claim is None or not window.claim.taken:
        count_error(_tracker)


def usage_from_crewai(usage: dict[str, Any] | None) -> Usage:
    """The `Usage` of CrewAI's per-call usage dict (normalized by CrewAI's own `UsageMetrics`)."""
    metrics = UsageMetrics.from_provider_dict(usage)
    if metrics is None:
        return Usage.unknown("CrewAI reported no usage for this call (a stream without usage?)")
    cache_read = min(metrics.cached_prompt_tokens, metrics.prompt_tokens)
    return Usage(
        metrics.prompt_tokens,
        metrics.completion_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=min(metrics.cache_creation_tokens, metrics.prompt_tokens - cache_read),
        reasoning_tokens=min(metrics.reasoning_tokens, metrics.completion_tokens),
    )
