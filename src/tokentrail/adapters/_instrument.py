"""One-line instrumentation of the real SDK clients: `instrument()`, `uninstrument()`, `wrap(client)`.

    import tokentrail as tt
    tt.instrument(tracker)          # every installed SDK, every client
    client = tt.wrap(OpenAI())      # or: this one client only

Covered, sync and async, streamed and not (each SDK's patch table is in `_instrument_<sdk>.py`):

- `openai` and `anthropic`: every request, at the SDKs' one HTTP entry point (`_instrument_stainless`):
  plain calls, `with_raw_response`, `with_streaming_response`, `.parse()`, the `.stream()` helpers and the
  `beta.*` namespaces alike. Billable paths: chat completions, Responses (create, retrieve, compact),
  legacy completions, embeddings, images (GPT image models), audio transcriptions; Anthropic messages
  (`beta.messages` too). Azure clients record provider "azure".
- `google-genai`: `models.generate_content`, `models.generate_content_stream`, and both on `client.aio`.
- `mistralai`: `chat.complete`, `chat.stream`, `chat.complete_async`, `chat.stream_async`.
- `cohere`: every method of its raw clients (`RawV2Client`, `RawBaseCohere` and their async twins), which
  the plain methods and `with_raw_response` both go through: chat, chat_stream, embed, rerank, parse, and
  v1 generate, generate_stream, summarize, classify.
- `ollama`: `Client` / `AsyncClient` `chat` and `generate`, `stream=True` included.
- `boto3` bedrock-runtime: `converse`, `converse_stream`, `invoke_model` and
  `invoke_model_with_response_stream` (Claude bodies). boto3 builds its client classes at run time, so
  the patch point is `botocore.client.BaseClient._make_api_call`, the one method every client method
  calls; other services and operations pass straight through.
- `litellm`: the module-level `litellm.completion` and `litellm.acompletion`, streamed or not, recorded
  with LiteLLM's normalized usage, the provider that served the call and LiteLLM's `response_cost`.
  SDK calls LiteLLM makes inside such a call (through the instrumented `openai` SDK, say) are part of
  it and pass untracked, so each call is recorded once; the LiteLLM callback stands down meanwhile.

What the caller sees does not change: a plain call returns the SDK's own response object; a streamed
call returns a thin proxy around the SDK's stream (see `_instrument_call`). For boto3 the response dict
is the SDK's own, with its `stream` (or streamed `body`) swapped for such a proxy; `invoke_model`'s body
is read to find the usage and replaced by an unread `StreamingBody` over the same bytes.

Choices:

- **OpenAI chat streaming** only reports usage when asked with `stream_options={"include_usage": True}`.
  With `include_stream_usage=True` (the default) that option is added to streamed chat completions
  whose caller did not pass `stream_options`; the stream then carries one extra final chunk with an
  empty `choices` list. Pass `include_stream_usage=False` to leave requests untouched (such streams
  record `unknown`).
- **Server errors** (the SDK raises, at the call or at the first read of a lazy stream): no usage record
  is written, since the provider reported no usage; the exception propagates unchanged, and the tracker
  counts it under `error_counts["call_errors"]`. A stream that fails after some events records `partial`.
- **Budgets**: when the tracker has budgets, the call reserves room first (a local count of the prompt
  and the request's output limit), so `BudgetExceeded` refuses it before any request is sent.
- **Timing**: `duration_ms` runs from the call to the response (to the end of the stream when
  streamed); `ttft_ms`, on streams, from the call to the first event that carries content.
- Tracking never raises into the caller's call (failures are logged at debug level), except
  `BudgetExceeded` by design.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from tokentrail._claims import take_claim
from tokentrail.adapters._instrument_call import Call, inside_tracked_call, tracking_call
from tokentrail.adapters._instrument_import import forget, when_imported
from tokentrail.adapters._instrument_target import Target

__all__ = ["FRAMEWORKS", "SUPPORTED", "Instrumented", "instrument", "instrumented", "uninstrument", "wrap"]

logger = logging.getLogger("tokentrail.adapters")

_C = TypeVar("_C")

_MARK = "__tokentrail_original__"

# SDK name -> the module holding its patch table (TARGETS, CLIENT_MODULES, WRAP_PATHS)
_TABLES = {
    "openai": "tokentrail.adapters._instrument_openai",
    "anthropic": "tokentrail.adapters._instrument_anthropic",
    "google-genai": "tokentrail.adapters._instrument_google",
    "mistralai": "tokentrail.adapters._instrument_mistral",
    "cohere": "tokentrail.adapters._instrument_cohere",
    "ollama": "tokentrail.adapters._instrument_ollama",
    "boto3": "tokentrail.adapters._instrument_bedrock",
    "litellm": "tokentrail.adapters._instrument_litellm",
}
_ALIASES = {
    "google": "google-genai",
    "genai": "google-genai",
    "gemini": "google-genai",
    "mistral": "mistralai",
    "bedrock": "boto3",
    "botocore": "boto3",
}
SUPPORTED = tuple(_TABLES)

# framework root module -> its integration (`tokentrail.integrations.<name>`), enabled on import of the
# framework: the framework's agents, runs and tools attribute the calls instrument() records
FRAMEWORKS = {
    "agents": "openai_agents",
    "pydantic_ai": "pydantic_ai",
    "langchain_core": "langchain",
    "llama_index.core": "llama_index",
    "crewai": "crewai",
}


class Instrumented(list[str]):
    """What `instrument()` covers: the installed SDKs (a list of their names), and the framework
    integrations it enables when those frameworks are imported."""

    def __init__(self, sdks: list[str], frameworks: list[str]) -> None:
        super().__init__(sdks)
        self.frameworks = frameworks

    @property
    def methods(self) -> list[str]:
        """The SDK methods patched so far (an SDK imported later is patched at its import)."""
        return instrumented()


@dataclass
class _Settings:
    tracker: Any = None  # a Tracker, or None for the process default at call time
    include_stream_usage: bool = True
    # the SDKs whose class patches are live (None: always, for wrap()); a method an SDK copied onto a
    # client object while patched (cohere does) stops tracking once `uninstrument()` ran
    active: set[str] | None = None

    def live(self, target: Target) -> bool:
        return self.active is None or target.sdk in self.active

    def resolve(self) -> Any:
        if self.tracker is not None:
            return self.tracker
        from tokentrail.tracker import get_tracker

        return get_tracker()


_active: set[str] = set()
_global = _Settings(active=_active)
_patched: dict[tuple[Any, str], Any] = {}  # (class or module, attribute) -> the original function
_lock = threading.RLock()  # re-entered when a patch runs inside an import made under it


# -- public API -------------------------------------------------------------------------------------------


def instrument(
    tracker: Any = None, providers: Iterable[str] | None = None, *, include_stream_usage: bool = True
) -> Instrumented:
    """Track every call the installed SDKs make, in every client, sync and async, streamed or not.

    `tracker` receives the records (None: `tokentrail.get_tracker()` at each call); `providers`
    limits the SDKs (names in `SUPPORTED`, or "gemini", "mistral", "bedrock"); SDKs that are not
    installed are skipped. An SDK that is not imported yet is not imported here: its methods are
    patched right after the program imports it. Calling it again is harmless (nothing is patched
    twice; the latest tracker and options apply). With `providers=None` it also enables the
    integration of each installed agent framework (OpenAI Agents SDK, PydanticAI, LangChain/LangGraph,
    LlamaIndex, CrewAI) when the framework is imported, so calls are attributed to the agent, run and
    tool that made them. Returns the SDKs it covers (`.frameworks`: the integrations; `.methods`: what is
    patched so far), and logs both at debug level. `uninstrument()` restores the original methods and
    turns those integrations off.
    """
    wanted = SUPPORTED if providers is None else tuple(_sdk_name(p) for p in providers)
    done: list[str] = []
    frameworks: list[str] = []
    with _lock:
        _global.tracker = tracker
        _global.include_stream_usage = include_stream_usage
        for sdk in wanted:
            table = _table(sdk)
            if table is None or not _installed(table.ROOT) or sdk in done:
                continue
            done.append(sdk)
            _active.add(sdk)
            for target in table.TARGETS:
                when_imported(target.module, functools.partial(_patch, target))
        if providers is None:
            for root, integration in FRAMEWORKS.items():
                if _installed(root):
                    frameworks.append(integration)
                    when_imported(root, functools.partial(_enable_framework, integration, tracker))
    logger.debug("tokentrail.instrument covers SDKs %s and frameworks %s", done, frameworks)
    return Instrumented(done, frameworks)


_enabled_frameworks: set[str] = set()


def _enable_framework(integration: str, tracker: Any) -> None:
    """Turn on a framework's integration (after the framework's import); never raises."""
    try:
        importlib.import_module(f"tokentrail.integrations.{integration}").enable(tracker)
        _enabled_frameworks.add(integration)
        logger.debug("tokentrail enabled the %s integration", integration)
    except Exception:
        logger.debug("tokentrail could not enable the %s integration", integration, exc_info=True)


def _patch(target: Target) -> None:
    """Put the tracking wrapper in place of `target`'s method (once; only while its SDK is wanted)."""
    with _lock:
        cls = _load_class(target) if target.sdk in _active else None
        current = None if cls is None else cls.__dict__.get(target.attr)
        if cls is None or current is None or (cls, target.attr) in _patched:
            return
        _patched[(cls, target.attr)] = current
        setattr(cls, target.attr, _make_wrapper(current, target, _global))
        logger.debug(
            "tokentrail instrumented %s.%s.%s", getattr(cls, "__module__", ""), cls.__name__, target.attr
        )


def uninstrument() -> None:
    """Restore every method `instrument()` replaced (clients built by `wrap()` stay wrapped)."""
    with _lock:
        for (cls, attr), original in _patched.items():
            setattr(cls, attr, original)
        _patched.clear()
        _active.clear()
        forget()
        for integration in sorted(_enabled_frameworks):
            try:
                importlib.import_module(f"tokentrail.integrations.{integration}").disable()
            except Exception:
                logger.debug("tokentrail could not disable the %s integration", integration, exc_info=True)
        _enabled_frameworks.clear()


def covers(sdk: str) -> bool:
    """Whether `instrument()` currently tracks `sdk` (a name in `SUPPORTED`)."""
    return sdk in _active


def instrumented() -> list[str]:
    """The `module.Class.method` names currently patched by `instrument()`."""
    return sorted(
        f"{owner.__name__}.{attr}"
        if isinstance(owner, ModuleType)
        else f"{owner.__module__}.{owner.__qualname__}.{attr}"
        for owner, attr in _patched
    )


def wrap(client: _C, tracker: Any = None, *, include_stream_usage: bool = True) -> _C:
    """Track the calls of this one client object (any SDK `instrument()` covers, sync or async).

    Only this client's own objects get tracking methods; other clients and the SDK classes are
    untouched. Wrapping twice is harmless. Calls through a wrapped client are recorded once into
    `tracker`, even when `instrument()` is also active.
    """
    settings = _Settings(tracker, include_stream_usage)
    table = _table_of(client)
    if table is None:
        raise TypeError(f"tokentrail.wrap does not know {type(client).__module__}.{type(client).__name__}")
    for path in table.WRAP_PATHS:
        resource: Any = client
        try:
            for name in path:
                resource = getattr(resource, name)
        except Exception:
            logger.debug("client %s has no %s", type(client).__name__, ".".join(path), exc_info=True)
            continue
        for target in table.TARGETS:
            _wrap_one(resource, target, settings)
    after_wrap = getattr(table, "after_wrap", None)
    if after_wrap is not None:  # copies of the client (`with_options`) stay wrapped
        after_wrap(client, lambda copy: wrap(copy, tracker, include_stream_usage=include_stream_usage))
    return client


# -- patching ------------------------------------------------------------------------------------------------


def _sdk_name(provider: object) -> str:
    name = str(provider).lower()
    return _ALIASES.get(name, name)


def _table(sdk: str) -> Any:
    module = _TABLES.get(sdk)
    return None if module is None else importlib.import_module(module)


def _installed(root: str) -> bool:
    try:
        return importlib.util.find_spec(root) is not None
    except (ImportError, ValueError):
        return False


def _table_of(client: object) -> Any:
    client_module = type(client).__module__
    for module in _TABLES.values():
        table = importlib.import_module(module)
        if any(client_module == m or client_module.startswith(m + ".") for m in table.CLIENT_MODULES):
            return table
    return None


def _load_class(target: Target) -> Any:
    """The class holding `target`'s method (its module for a module-level function), or None."""
    try:
        module = importlib.import_module(target.module)
    except ImportError:
        return None
    except Exception:
        logger.debug("cannot import %s", target.module, exc_info=True)
        return None
    if target.is_function:
        return module  # the function is patched on its module
    cls = getattr(module, target.cls, None)
    return cls if isinstance(cls, type) else None


def _wrap_one(resource: Any, target: Target, settings: _Settings) -> None:
    """Give `resource` its own tracking `target.attr`, when its class is the target's."""
    mro = type(resource).__mro__
    owner = _load_class(target) if any(k.__name__ == target.cls for k in mro) else None
    if owner is None or owner not in mro or target.attr not in owner.__dict__:
        return
    existing = resource.__dict__.get(target.attr) if hasattr(resource, "__dict__") else None
    if existing is not None and hasattr(existing, _MARK):
        return  # wrapped already
    original = _patched.get((owner, target.attr)) or owner.__dict__[target.attr]
    original = getattr(original, _MARK, original)
    setattr(resource, target.attr, _make_wrapper(original, target, settings).__get__(resource))


def _marked(function: Any, original: Any) -> Any:
    setattr(function, _MARK, original)
    return function


def _begin(
    target: Target, settings: _Settings, resource: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Call | None, Any]:
    """(the call's tracking state, the request) — or (None, None) to pass the call through untracked."""
    if not settings.live(target) or inside_tracked_call():
        return None, None
    try:
        request = target.request(resource, args, kwargs, settings)
        if request is None:
            return None, None
        tracker = settings.resolve()
    except Exception:
        logger.debug("tokentrail could not read a call", exc_info=True)
        return None, None
    take_claim()  # this layer records the call: a framework that saw it begin must not
    return Call.start(target, tracker, resource, request), request


def _make_wrapper(original: Any, target: Target, settings: _Settings) -> Any:
    """A function to put in place of `original` (a plain function taking the resource as `self`).

    Three call shapes share `_begin` and `Target.deliver`: a plain function, a coroutine function
    (the response is awaited) and an async generator function, or one made an async context manager
    (`contextlib.asynccontextmanager`): the call returns the stream, or what opens it, at once.
    """
    if target.is_function:
        return _make_function_wrapper(original, target, settings)
    asynchronous = inspect.isasyncgenfunction(inspect.unwrap(original))
    if not asynchronous and (
        inspect.iscoroutinefunction(inspect.unwrap(original)) or target.cls.startswith("Async")
    ):

        @functools.wraps(original)
        async def acall(self: Any, *args: Any, **kwargs: Any) -> Any:
            call, request = _begin(target, settings, self, args, kwargs)
            if call is None:
                return await original(self, *args, **kwargs)
            try:
                response = await original(self, *request.args, **request.kwargs)
            except BaseException:
                call.failed()
                raise
            return _deliver(target, call, request, response, asynchronous=True)

        return _marked(acall, original)

    @functools.wraps(original)
    def call_(self: Any, *args: Any, **kwargs: Any) -> Any:
        call, request = _begin(target, settings, self, args, kwargs)
        if call is None:
            return original(self, *args, **kwargs)
        try:
            response = original(self, *request.args, **request.kwargs)
        except BaseException:
            call.failed()
            raise
        return _deliver(target, call, request, response, asynchronous=asynchronous)

    return _marked(call_, original)


def _make_function_wrapper(original: Any, target: Target, settings: _Settings) -> Any:
    """A function to put in place of a module-level function (`litellm.completion`).

    While the call runs, the SDK calls it makes itself (LiteLLM calling through the instrumented `openai`
    SDK) pass untracked (`tracking_call`), so the call is recorded once, at this level.
    """
    if inspect.iscoroutinefunction(original) or inspect.iscoroutinefunction(inspect.unwrap(original)):

        @functools.wraps(original)
        async def afunction(*args: Any, **kwargs: Any) -> Any:
            call, request = _begin(target, settings, None, args, kwargs)
            if call is None:
                return await original(*args, **kwargs)
            try:
                with tracking_call():
                    response = await original(*request.args, **request.kwargs)
            except BaseException:
                call.failed()
                raise
            return _deliver(target, call, request, response, asynchronous=True)

        return _marked(afunction, original)

    @functools.wraps(original)
    def function(*args: Any, **kwargs: Any) -> Any:
        call, request = _begin(target, settings, None, args, kwargs)
        if call is None:
            return original(*args, **kwargs)
        try:
            with tracking_call():
                response = original(*request.args, **request.kwargs)
        except BaseException:
            call.failed()
            raise
        return _deliver(target, call, request, response, asynchronous=False)

    return _marked(function, original)


def _deliver(target: Target, call: Call, request: Any, response: Any, *, asynchronous: bool) -> Any:
    """`target.deliver`, which never raises a tracking failure (only a failure of the call itself)."""
    return target.deliver(call, request, response, asynchronous=asynchronous)
