"""PydanticAI: every model request an agent run makes, attributed to the agent, its run and its tool.

    from tokentrail.integrations import pydantic_ai as tt_pydantic_ai
    tt_pydantic_ai.enable()                 # every Agent, whenever it was built
    # or, for one agent:  Agent(model, capabilities=[tt_pydantic_ai.TokentrailCapability()])

Design. PydanticAI's own extension point is the *capability* (`pydantic_ai.capabilities`). Ours:

- `for_run(ctx)` reads the run's agent name (`Agent(name=…)`, or the name PydanticAI infers from the
  variable holding the agent) and its `run_id`;
- `get_wrapper_model(model)` wraps the model that serves each attempt in a `WrapperModel` whose
  `request()` / `request_stream()` run in the very task and context the provider SDK call runs in
  (for streams that is the consuming task, not the task running `wrap_model_request`, so hooks such
  as `before/after_model_request` could not carry a claim there). Around each request it opens a
  claim (`tokentrail._claims`) and enters `scope(agent=…, session=…)`; at the end it records the
  response's `RequestUsage` only when no instrumented SDK call took the claim — one record per
  request with `instrument()`, this capability, or both;
- `wrap_tool_execute` enters `scope(agent=…, session=…, tool=<tool name>)` around the tool
  function, so calls made inside a tool (another agent delegated to, or a plain SDK call) carry
  `tool`, and a delegated agent opens a child level of the hierarchy path.

`session` is the run id, unless a scope around the run already names one (the user's
`tt.scope(session=…)`, or the outer run of an agent delegated to inside a tool): the outer session wins.

PydanticAI has no public registry of capabilities for every agent (`Agent.instrument_all` only takes
OpenTelemetry settings), so `enable()` wraps the one step every run of every agent passes its run-level
capabilities through (`Agent._bind_run_capabilities`, checked on pydantic-ai 2.68; without it `enable()`
returns False and logs why) and adds ours there, unless the agent or the run already carries one (an
explicit capability and its tracker win).
`disable()` restores it. Usage PydanticAI estimated itself (`FunctionModel`, `TestModel`) is recorded
`estimated`; a response without usage `unknown`; a stream closed before its end `partial`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import KW_ONLY, dataclass
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import AbstractCapability, ValidatedToolArgs, WrapToolExecuteHandler
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.usage import RequestUsage

from tokentrail._claims import Claim, close_claim, open_claim
from tokentrail._types import Usage, UsageStatus
from tokentrail.adapters.hooks import resolve_tracker
from tokentrail.scope import current_scope, enter_scope, exit_scope, scope

__all__ = ["TokentrailCapability", "disable", "enable", "is_enabled", "usage_from_request_usage"]

OWNER = "pydantic-ai"

logger = logging.getLogger("tokentrail.integrations")

_lock = threading.Lock()
_original_bind: Callable[..., Any] | None = None
_enabled_tracker: Any = None


def enable(tracker: Any = None) -> bool:
    """Track every PydanticAI agent run from now on (agents built before included); idempotent.

    `tracker` receives the records (None: `tokentrail.get_tracker()` at each call). Returns False when
    the installed PydanticAI lacks the step it hooks (then add `TokentrailCapability()` per agent).
    """
    global _original_bind, _enabled_tracker
    with _lock:
        _enabled_tracker = tracker
        if _original_bind is not None:
            return True
        original = getattr(Agent, "_bind_run_capabilities", None)
        if original is None:
            logger.debug(
                "tokentrail: this pydantic-ai has no Agent._bind_run_capabilities; use the capability"
            )
            return False
        _original_bind = original
        Agent._bind_run_capabilities = _bind_with_tracking  # type: ignore[method-assign,assignment]
        return True


def disable() -> None:
    """Stop adding the capability to runs (agents given it explicitly keep it)."""
    global _original_bind
    with _lock:
        if _original_bind is None:
            return
        Agent._bind_run_capabilities = _original_bind  # type: ignore[method-assign]
        _original_bind = None


def is_enabled() -> bool:
    """Whether every agent run is tracked now."""
    return _original_bind is not None


def _bind_with_tracking(agent: Agent[Any, Any], extra_capabilities: list[Any]) -> list[Any]:
    """`Agent._bind_run_capabilities`, with our capability added to a run nothing tracks yet."""
    original = _original_bind
    if original is None:  # disabled while this run was starting
        return Agent._bind_run_capabilities(agent, extra_capabilities)
    try:
        if not _carries_capability(agent, extra_capabilities):
            extra_capabilities = [*extra_capabilities, TokentrailCapability(_enabled_tracker)]
    except Exception:
        logger.debug("tokentrail could not add its capability to a pydantic-ai run", exc_info=True)
    return original(agent, extra_capabilities)  # type: ignore[no-any-return]


def _carries_capability(agent: Agent[Any, Any], extra_capabilities: list[Any]) -> bool:
    """Whether the agent or the run already holds a `TokentrailCapability` (explicit wiring wins)."""
    found: list[AbstractCapability[Any]] = []

    def visit(capability: AbstractCapability[Any]) -> None:
        if isinstance(capability, TokentrailCapability):
            found.append(capability)

    agent.root_capability.apply(visit)
    for capability in extra_capabilities:
        if isinstance(capability, AbstractCapability):
            capability.apply(visit)
    return bool(found)


@dataclass
class _RunInfo:
    """Who a run's requests are for: resolved once per run, in `for_run`."""

    agent: str | None
    run_id: str | None


@dataclass
class TokentrailCapability(AbstractCapability[Any]):
    """A PydanticAI capability that records each model request of the runs it is part of."""

    tracker: Any = None
    _: KW_ONLY
    run: _RunInfo | None = None

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # not part of agent specs: it holds a live tracker

    async def for_run(self, ctx: RunContext[Any]) -> TokentrailCapability:
        name = ctx.agent.name if ctx.agent is not None else None
        return TokentrailCapability(self.tracker, run=_RunInfo(name, ctx.run_id))

    def get_wrapper_model(self, model: Model) -> Model | None:
        if self.run is None:
            return None
        return _TrackedModel(model, self.run, self.tracker)

    async def wrap_tool_execute(
        self,
        ctx: RunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: ValidatedToolArgs,
        handler: WrapToolExecuteHandler,
    ) -> Any:
        token = enter_scope(_scope_for(self.run or _RunInfo(None, None), tool=call.tool_name))
        try:
            return await handler(args)
        finally:
            exit_scope(token)


def _scope_for(run: _RunInfo, tool: str | None = None) -> scope:
    """The run's attribution: an outer session (the user's, or a delegating run's) wins over the run id."""
    session = None if current_scope().session is not None else run.run_id
    return scope(agent=run.agent, session=session, tool=tool)


class _TrackedModel(WrapperModel):
    """Opens a claim and the run's scope around each request, in the context the SDK call runs in."""

    def __init__(self, wrapped: Model, run: _RunInfo, tracker: Any) -> None:
        super().__init__(wrapped)
        self._run = run
        self._tracker = tracker

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        claim = open_claim(OWNER)
        token = enter_scope(_scope_for(self._run))
        started = time.perf_counter()
        try:
            response = await self.wrapped.request(messages, model_settings, model_request_parameters)
            if not claim.taken:
                self._record(response, _status_of(self.wrapped), started, claim)
            return response
        finally:
            exit_scope(token)
            close_claim(claim)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        claim = open_claim(OWNER)
        token = enter_scope(_scope_for(self._run))
        started = time.perf_counter()
        stream: StreamedResponse | None = None
        try:
            async with self.wrapped.request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as stream:
                yield stream
        finally:
            if stream is not None and not claim.taken:
                self._record_stream(stream, started, claim)
            exit_scope(token)
            close_claim(claim)

    def _record_stream(self, stream: StreamedResponse, started: float, claim: Claim) -> None:
        try:
            response = stream.get()
        except Exception:
            logger.debug("tokentrail could not read a pydantic-ai stream's response", exc_info=True)
            return
        status = _status_of(self.wrapped)
        if response.state not in ("complete", "suspended"):
            status = UsageStatus.PARTIAL
        self._record(response, status, started, claim)

    def _record(self, response: ModelResponse, status: UsageStatus, started: float, claim: Claim) -> None:
        """Record `response` in the run's scope (entered by the caller); never raises into the run."""
        tracker = None
        try:
            tracker = resolve_tracker(self._tracker)
            tracker.record(
                usage_from_request_usage(response.usage, status),
                response.model_name,
                response.provider_name,
                duration_ms=(time.perf_counter() - started) * 1000.0,
            )
        except Exception:
            logger.debug("tokentrail could not record a pydantic-ai request (%r)", claim, exc_info=True)
            count = getattr(tracker, "_count", None)
            if count is not None:
                count("capture_errors")


def _status_of(model: Model) -> UsageStatus:
    """`estimated` for the models whose usage PydanticAI counts itself instead of a provider reporting it."""
    while isinstance(model, WrapperModel):
        model = model.wrapped
    if isinstance(model, (FunctionModel, TestModel)):
        return UsageStatus.ESTIMATED
    return UsageStatus.COMPLETE


def usage_from_request_usage(usage: RequestUsage, status: UsageStatus = UsageStatus.COMPLETE) -> Usage:
    """tokentrail's `Usage` from PydanticAI's `RequestUsage` (one token convention: input includes cache)."""
    if usage.unmeasured_requests:
        return Usage.unknown("the provider's response carried no usage")
    if status is UsageStatus.PARTIAL and not (usage.input_tokens or usage.output_tokens):
        return Usage.unknown("the stream was closed before its usage arrived")
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.output_reasoning_tokens,
        input_audio_tokens=usage.input_audio_tokens,
        cache_audio_read_tokens=usage.cache_audio_read_tokens,
        output_audio_tokens=usage.output_audio_tokens,
        status=status,
    )
