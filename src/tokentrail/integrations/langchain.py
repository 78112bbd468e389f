"""LangChain / LangGraph: each chat-model run recorded once, attributed to the graph node or agent.

    from tokentrail.integrations import langchain as tt_langchain
    tt_langchain.enable()        # every LangChain run of the process, no `callbacks=` to pass
    # or per run: graph.invoke(..., config={"callbacks": [tt.TokentrailCallbackHandler()]})

Attribution, from LangChain's own run tree (chain, tool and model runs with their parents):
- agent: `lc_agent_name` metadata (`create_agent`), else the LangGraph node (`langgraph_node`) — the
  agent-loop nodes of a named prebuilt agent (`create_react_agent(name=…)`: "agent", "tools", …) take
  the agent's name — else the name of a named root runnable, else the model run's own `run_name`;
- tool: the tool run (`on_tool_start`) a model call is made in; session: `thread_id`; tags: the run's
  tags minus LangChain's bookkeeping ones (`seq:step:…`, `graph:step:…`, `langsmith:…`).
Chain and tool runs enter a tokentrail scope while they run, so SDK calls made directly inside a node
or tool are attributed too.

Exactly once (`tokentrail._claims`): a model run opens a claim (and its scope) in its start hook, which
LangChain runs inline in the context the provider call then runs in; an instrumented SDK call takes the
claim and records itself, and the handler records at the end only a call nobody took. Two handlers on
one run (an explicit handler and `enable()`) record it once: the first to see the run owns it.

Usage comes from the generation's `message.usage_metadata` (LangChain's standard: `input_tokens`
includes cache reads and writes), else from `llm_output["token_usage"]` (or `"usage"`). A run with no
usage records `unknown` with the reason (a ChatOpenAI stream reports usage only with `stream_usage=True`).
Failed runs are not recorded; they are counted under `error_counts["call_errors"]`. Tracking never
raises into the run. Importing this module imports langchain_core (not a dependency of tokentrail).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast
from uuid import UUID

from tokentrail._claims import Claim, close_claim, current_claim, open_claim
from tokentrail._record import Attribution
from tokentrail._types import Usage, UsageStatus
from tokentrail.scope import ScopeEntry, current_scope, enter_scope, exit_scope, scope

__all__ = ["TokentrailCallbackHandler", "disable", "enable", "is_enabled", "usage_from_metadata"]

logger = logging.getLogger("tokentrail.integrations")

_langchain_callbacks = importlib.import_module("langchain_core.callbacks")
_BaseCallbackHandler: Any = _langchain_callbacks.BaseCallbackHandler

_PROVIDERS = {
    "google_genai": "google",
    "google_vertexai": "google",
    "google_anthropic_vertex": "anthropic",
    "amazon_bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "azure_openai": "azure",
    "azure": "azure",
}
# Nodes of the prebuilt agent loops (`create_react_agent`, `create_agent`): the agent's name says more
_AGENT_LOOP_NODES = frozenset(
    {"agent", "model", "tools", "pre_model_hook", "post_model_hook", "generate_structured_response"}
)
_DEFAULT_GRAPH_NAME = "LangGraph"
_BOOKKEEPING_TAGS = ("seq:step:", "graph:step:", "langsmith:", "map:key:", "langgraph:")
_STREAM_WITHOUT_USAGE = (
    "the stream reported no token usage; for ChatOpenAI create the model with "
    "ChatOpenAI(stream_usage=True) (or use tt.instrument(), which asks for it)"
)
_MAX_OPEN_RUNS = 100_000  # runs whose end never came (an abandoned stream): forget the oldest past this


class _Run:
    """A LangChain run this module follows: what it attributes, and what to undo when it ends."""

    __slots__ = (
        "agent",
        "attribution",
        "claim",
        "claim_shared",
        "entry",
        "model",
        "name",
        "owner",
        "provider",
        "started",
        "streamed",
        "tool",
    )

    def __init__(self, owner: Any, name: str | None, agent: str | None, tool: str | None) -> None:
        self.owner = owner
        self.name = name
        self.agent = agent  # the agent calls inside this run are for (inherited from the parents)
        self.tool = tool  # the tool run they are made in, if any
        self.entry: ScopeEntry | None = None
        self.attribution: Attribution | None = None
        self.claim: Claim | None = None
        self.claim_shared = False  # another run of the same multi-prompt call opened the claim
        self.started = 0.0
        self.model: str | None = None
        self.provider: str | None = None
        self.streamed = False


_RUNS: dict[UUID, _Run] = {}  # every handler's open runs: the first handler to see a run owns it
_RUNS_LOCK = threading.Lock()


def _adopt(run_id: UUID, run: _Run) -> bool:
    """Register `run` unless another handler already follows `run_id` (then this one stays out)."""
    with _RUNS_LOCK:
        if run_id in _RUNS:
            return False
        if len(_RUNS) >= _MAX_OPEN_RUNS:
            del _RUNS[next(iter(_RUNS))]
        _RUNS[run_id] = run
        return True


def _release(run_id: UUID, owner: Any) -> _Run | None:
    """Forget the run `owner` follows under `run_id` (None when it follows no such run)."""
    with _RUNS_LOCK:
        run = _RUNS.get(run_id)
        if run is None or run.owner is not owner:
            return None
        del _RUNS[run_id]
        return run


def _parent(parent_run_id: UUID | None) -> _Run | None:
    return None if parent_run_id is None else _RUNS.get(parent_run_id)


class TokentrailCallbackHandler(_BaseCallbackHandler):  # type: ignore[misc]
    """LangChain callback handler recording each chat-model run once on a tokentrail tracker."""

    raise_error = False
    run_inline = True  # hooks run in the run's own context: claims and scopes reach the provider call

    def __init__(self, tracker: Any = None) -> None:
        super().__init__()
        self.tracker = tracker
        self._declined: set[UUID] = set()  # model runs another handler follows
        self._declined_lock = threading.Lock()

    # -- chain and tool runs: attribution ---------------------------------------------------------

    def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._start_run(run_id, parent_run_id, _text(kwargs.get("name")), tags, metadata, tool=None)
        except Exception:
            logger.debug("tokentrail could not follow a LangChain chain run", exc_info=True)

    def on_tool_start(
        self,
        serialized: Any,
        input_str: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            name = _text(kwargs.get("name"))
            if name is None and isinstance(serialized, Mapping):
                name = _text(serialized.get("name"))
            self._start_run(run_id, parent_run_id, name, tags, metadata, tool=name or "tool")
        except Exception:
            logger.debug("tokentrail could not follow a LangChain tool run", exc_info=True)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_run(run_id)

    # -- model runs: claim, scope, record ---------------------------------------------------------

    def on_llm_start(
        self,
        serialized: Any,
        prompts: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_model(run_id, parent_run_id, tags, metadata, kwargs)

    def on_chat_model_start(
        self,
        serialized: Any,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_model(run_id, parent_run_id, tags, metadata, kwargs)

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        run = _RUNS.get(run_id)
        if run is not None:
            run.streamed = True

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if self._follows_elsewhere(run_id):
            return  # another handler follows this run and records it
        run = _release(run_id, self)
        try:
            if run is None or run.claim is None or not run.claim.taken:
                self._record(response, run)
        except Exception:
            logger.debug("tokentrail could not record a LangChain run", exc_info=True)
        finally:
            _leave(run)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        if self._follows_elsewhere(run_id):
            return
        run = _release(run_id, self)
        try:
            if run is None or run.claim is None or not run.claim.taken:
                from tokentrail.adapters.hooks import count_error

                count_error(self.tracker)
        except Exception:
            logger.debug("tokentrail could not count a failed LangChain run", exc_info=True)
        finally:
            _leave(run)

    # -- helpers ----------------------------------------------------------------------------------

    def _follows_elsewhere(self, run_id: UUID) -> bool:
        """True when another handler owns this model run (this one declined it at its start)."""
        with self._declined_lock:
            if run_id in self._declined:
                self._declined.discard(run_id)
                return True
        run = _RUNS.get(run_id)
        return run is not None and run.owner is not self

    def _decline(self, run_id: UUID) -> None:
        with self._declined_lock:
            if len(self._declined) >= _MAX_OPEN_RUNS:
                self._declined.clear()
            self._declined.add(run_id)

    def _start_run(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str | None,
        tags: list[str] | None,
        metadata: Mapping[str, Any] | None,
        *,
        tool: str | None,
    ) -> None:
        parent = _parent(parent_run_id)
        meta = metadata if isinstance(metadata, Mapping) else {}
        agent = _run_agent(name, parent, parent_run_id, tags or (), meta, is_tool=tool is not None)
        inherited_agent = parent.agent if parent is not None else None
        run = _Run(self, name, agent or inherited_agent, tool or (parent.tool if parent else None))
        if not _adopt(run_id, run):
            return
        new_agent = agent if agent != inherited_agent else None
        session = _text(meta.get("thread_id")) if parent_run_id is None else None
        if new_agent is not None or tool is not None or session is not None:
            _enter(run, scope(agent=new_agent, tool=tool, session=session))

    def _end_run(self, run_id: UUID) -> None:
        run = _release(run_id, self)
        if run is not None:
            _exit(run)

    def _start_model(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        try:
            meta = metadata if isinstance(metadata, Mapping) else {}
            parent = _parent(parent_run_id)
            agent = _text(kwargs.get("name")) or (parent.agent if parent is not None else None)
            if agent is None and parent is None:  # the chain runs were not followed: metadata only
                agent = _text(meta.get("lc_agent_name")) or _text(meta.get("langgraph_node"))
            run = _Run(self, None, agent, parent.tool if parent is not None else None)
            if not _adopt(run_id, run):
                self._decline(run_id)
                return
            run.model, run.provider = _model_of(meta, kwargs.get("invocation_params"))
            run.started = time.perf_counter()
            if _join_group(run, kwargs.get("batch_size")):
                return
            _enter(
                run,
                scope(
                    agent=agent, tool=run.tool, session=_text(meta.get("thread_id")), tags=_user_tags(tags)
                ),
            )
            run.attribution = current_scope()
            run.claim = open_claim("langchain")
            _open_group(run.claim, kwargs.get("batch_size"))
        except Exception:
            logger.debug("tokentrail could not start following a LangChain model run", exc_info=True)

    def _record(self, response: Any, run: _Run | None) -> None:
        from tokentrail.adapters.hooks import resolve_tracker

        tracker = resolve_tracker(self.tracker)
        duration_ms = None if run is None else (time.perf_counter() - run.started) * 1000.0
        attribution = run.attribution if run is not None else None
        here = current_scope()
        for usage, found_model, found_provider, context in _calls(response):
            if run is not None and run.streamed and usage.status is UsageStatus.UNKNOWN:
                usage = Usage.unknown(_STREAM_WITHOUT_USAGE)
            keywords: dict[str, Any] = {}
            if attribution is not None and attribution is not here:  # ended in another context
                keywords = {
                    "agent": attribution.agent,
                    "session": attribution.session,
                    "user": attribution.user,
                    "tool": attribution.tool,
                    "tags": attribution.tags,
                }
            tracker.record(
                usage,
                model=found_model or (run.model if run else None),
                provider=(run.provider if run else None) or found_provider,
                duration_ms=duration_ms,
                context=context,
                **keywords,
            )


def _enter(run: _Run, scoped: scope) -> None:
    """Enter `scoped` for `run` in this context (left by `_exit`, and inert once the run ends anywhere)."""
    run.entry = enter_scope(scoped)


def _exit(run: _Run) -> None:
    if run.entry is not None:
        exit_scope(run.entry)


class _EnabledHandler:
    """What LangChain's configure hook reads (it calls only `get()`, as on a ContextVar): the handler
    `enable()` set, seen from every thread and task, unlike a ContextVar set in one context."""

    def __init__(self) -> None:
        self.handler: TokentrailCallbackHandler | None = None
        self.registered = False

    def get(self) -> TokentrailCallbackHandler | None:
        return self.handler


_ENABLED = _EnabledHandler()
_ENABLE_LOCK = threading.Lock()


def enable(tracker: Any = None) -> TokentrailCallbackHandler:
    """Record every LangChain / LangGraph model run of the process, without passing `callbacks=`.

    Idempotent (a different `tracker` replaces the first). A run that already has a
    `TokentrailCallbackHandler` in its callbacks keeps that one only. Undo with `disable()`.
    """
    with _ENABLE_LOCK:
        if not _ENABLED.registered:
            context = importlib.import_module("langchain_core.tracers.context")
            context.register_configure_hook(
                cast(Any, _ENABLED), inheritable=True, handle_class=TokentrailCallbackHandler
            )
            _ENABLED.registered = True
        handler = _ENABLED.handler
        if handler is None or handler.tracker is not tracker:
            handler = _ENABLED.handler = TokentrailCallbackHandler(tracker)
        return handler


def disable() -> None:
    """Stop attaching the handler to new runs (runs already started finish recording)."""
    _ENABLED.handler = None


def is_enabled() -> bool:
    """Whether `enable()` attaches the handler to new runs now."""
    return _ENABLED.handler is not None


def _leave(run: _Run | None) -> None:
    """Undo what a model run's start set up in this context: its claim, then its scope."""
    if run is None:
        return
    if run.claim is not None and not run.claim_shared:
        close_claim(run.claim)
    _exit(run)


# A multi-prompt `generate([...])` starts every run before making any call, so calls cannot be told
# apart: its runs share the first run's claim and scope (an instrumented SDK takes all or none of them).
_GROUPS: dict[Claim, int] = {}  # claim of a group → runs still to join it
_GROUPS_LOCK = threading.Lock()


def _open_group(claim: Claim, batch_size: object) -> None:
    if isinstance(batch_size, int) and batch_size > 1:
        with _GROUPS_LOCK:
            _GROUPS[claim] = batch_size - 1


def _join_group(run: _Run, batch_size: object) -> bool:
    """Join the open claim of the multi-prompt call `run` belongs to; False when it starts none."""
    if not (isinstance(batch_size, int) and batch_size > 1):
        return False
    claim = current_claim()
    if claim is None:
        return False
    with _GROUPS_LOCK:
        left = _GROUPS.get(claim)
        if not isinstance(left, int) or left < 1:
            return False
        if left == 1:
            del _GROUPS[claim]
        else:
            _GROUPS[claim] = left - 1
    run.claim, run.claim_shared, run.attribution = claim, True, current_scope()
    return True


def _run_agent(
    name: str | None,
    parent: _Run | None,
    parent_run_id: UUID | None,
    tags: Iterable[str],
    meta: Mapping[str, Any],
    *,
    is_tool: bool,
) -> str | None:
    """The agent a chain run starts, if it starts one (its parent's agent otherwise)."""
    agent_name = _text(meta.get("lc_agent_name"))
    if agent_name is not None:
        return agent_name
    node = _text(meta.get("langgraph_node"))
    if node is not None and node == name and any(t.startswith("graph:step:") for t in tags):
        graph = parent.name if parent is not None else None
        if node in _AGENT_LOOP_NODES and graph not in (None, _DEFAULT_GRAPH_NAME):
            return graph
        return node
    if parent_run_id is None and not is_tool and name is not None and name != _DEFAULT_GRAPH_NAME:
        return None if name.startswith("Runnable") else name  # the root's run_name (or graph name)
    return None


def _user_tags(tags: Iterable[str] | None) -> list[str] | None:
    kept = [t for t in tags or () if isinstance(t, str) and not t.startswith(_BOOKKEEPING_TAGS)]
    return kept or None


def _model_of(meta: Mapping[str, Any], params: object) -> tuple[str | None, str | None]:
    """The model and provider a run names before it runs (the response may name them better)."""
    params = params if isinstance(params, Mapping) else {}
    model = _text(meta.get("ls_model_name")) or _text(params.get("model")) or _text(params.get("model_name"))
    return model, _provider(meta.get("ls_provider"))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _provider(value: object) -> str | None:
    name = _text(value)
    return None if name is None else _PROVIDERS.get(name.lower(), name.lower())


def _count(details: object, *names: str) -> int:
    from tokentrail.adapters._base import as_count

    if not isinstance(details, Mapping):
        return 0
    for name in names:
        value = details.get(name)
        if value is not None:
            return as_count(value, name)
    return 0


def usage_from_metadata(metadata: object) -> Usage:
    """A LangChain `UsageMetadata` (or llm_output token usage) dict as a `Usage`; never raises."""
    from tokentrail.adapters._base import Malformed, build_usage

    if not isinstance(metadata, Mapping):
        return Usage.unknown("the run reported no token usage")
    try:
        inputs = metadata.get("input_token_details")
        outputs = metadata.get("output_token_details")
        prompt_details = metadata.get("prompt_tokens_details")
        completion_details = metadata.get("completion_tokens_details")
        input_tokens = _count(metadata, "input_tokens", "prompt_tokens")
        cache_read = _count(inputs, "cache_read") or _count(prompt_details, "cached_tokens")
        cache_write = _count(inputs, "cache_creation")
        if "prompt_tokens" not in metadata and "input_tokens" in metadata and inputs is None:
            # Anthropic-shaped llm_output usage: input_tokens excludes the cache, listed beside it
            cache_read = _count(metadata, "cache_read_input_tokens")
            cache_write = _count(metadata, "cache_creation_input_tokens")
            input_tokens += cache_read + cache_write
        if "input_tokens" not in metadata and "prompt_tokens" not in metadata:
            raise Malformed("no input_tokens / prompt_tokens in the reported usage")
        return build_usage(
            input_tokens=input_tokens,
            output_tokens=_count(metadata, "output_tokens", "completion_tokens"),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            cache_write_1h_tokens=_count(inputs, "ephemeral_1h_input_tokens"),
            input_audio_tokens=_count(inputs, "audio") or _count(prompt_details, "audio_tokens"),
            reasoning_tokens=_count(outputs, "reasoning") or _count(completion_details, "reasoning_tokens"),
            output_audio_tokens=_count(outputs, "audio") or _count(completion_details, "audio_tokens"),
        )
    except Malformed as exc:
        return Usage.unknown(exc.reason)
    except Exception as exc:
        return Usage.unknown(f"unexpected {type(exc).__name__} while reading usage: {exc}")


def _calls(
    response: Any,
) -> list[tuple[Usage, str | None, str | None, dict[str, str] | None]]:
    """(usage, model, provider, price context) per prompt of an `LLMResult`."""
    llm_output = getattr(response, "llm_output", None)
    llm_output = llm_output if isinstance(llm_output, Mapping) else {}
    output_model = _text(llm_output.get("model_name")) or _text(llm_output.get("model"))
    calls: list[tuple[Usage, str | None, str | None, dict[str, str] | None]] = []
    fallback: tuple[str | None, str | None, dict[str, str] | None] = (output_model, None, None)
    for candidates in getattr(response, "generations", None) or ():
        found: tuple[Usage, str | None, str | None, dict[str, str] | None] | None = None
        for generation in candidates or ():
            message = getattr(generation, "message", None)
            meta = getattr(message, "response_metadata", None)
            meta = meta if isinstance(meta, Mapping) else {}
            model = _text(meta.get("model_name")) or _text(meta.get("model")) or output_model
            provider = _provider(meta.get("model_provider"))
            tier = _text(meta.get("service_tier"))
            context = {"service_tier": tier} if tier else None
            fallback = (model, provider, context)
            usage_metadata = getattr(message, "usage_metadata", None)
            if usage_metadata is not None:
                found = (usage_from_metadata(usage_metadata), model, provider, context)
                break
        if found is not None:
            calls.append(found)
    if calls:
        return calls
    token_usage = llm_output.get("token_usage") or llm_output.get("usage")
    model, provider, context = fallback
    return [(usage_from_metadata(token_usage), model, provider, context)]
