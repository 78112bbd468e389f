"""One-line instrumentation of the real SDK clients: `instrument()`, `uninstrument()`, `wrap(client)`.

    import tokentrail as tt
    tt.instrument(tracker)          # every installed SDK (openai, anthropic), every client
    client = tt.wrap(OpenAI())      # or: this one client only

Covered: `openai` (OpenAI, AsyncOpenAI, AzureOpenAI, AsyncAzureOpenAI): `chat.completions.create`,
`responses.create`, and the `responses.stream` helper (`chat.completions.stream` calls `create`, so it
is tracked through it); `anthropic`
(Anthropic, AsyncAnthropic): `messages.create` and the `messages.stream(...)` helper. Sync and async,
`stream=True` and not.

What the caller sees does not change: a non-streamed call returns the SDK's own response object; a
streamed call returns a thin proxy around the SDK's `Stream` / `AsyncStream` that iterates, closes and
works as a context manager exactly like it, forwarding every other attribute. Each event is fed to a
stream accumulator, and the call is recorded once: when the stream is exhausted (complete usage), or
closed early, broken out of and collected, raises, or its asyncio task is cancelled (`partial` usage:
what was seen). A stream that never reports usage records `unknown`.

Choices:

- **OpenAI chat streaming** only reports usage when asked with `stream_options={"include_usage": True}`.
  With `include_stream_usage=True` (the default) that option is added to streamed chat completions
  whose caller did not pass `stream_options`; the stream then carries one extra final chunk with an
  empty `choices` list (code that indexes `chunk.choices[0]` unconditionally should check it).
  Pass `include_stream_usage=False` to leave requests untouched (such streams record `unknown`).
- **Server errors** (the SDK raises `APIStatusError`, connection errors…): no usage record is written,
  since the provider billed nothing it reported; the exception propagates unchanged, and the tracker
  counts it under `error_counts["call_errors"]`.
- **Budgets**: when the tracker has budgets, the call runs inside `tracker.reserve(model, provider,
  input_tokens=<local count of the prompt>, max_output_tokens=<max_tokens / max_completion_tokens /
  max_output_tokens>)`, so `BudgetExceeded` refuses it before any request is sent.
- **Timing**: `duration_ms` runs from the call to the response (to the end of the stream when
  streamed). Time to first token is measured on streams but `Record` has no field for it yet.
- Requests made through `with_raw_response` / `with_streaming_response` are passed through untracked.
- Tracking never raises into the caller's call (failures are logged at debug level), except
  `BudgetExceeded` by design.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tokentrail.adapters._base import Captured, StreamAccumulator
from tokentrail.errors import BudgetExceeded

__all__ = ["instrument", "instrumented", "uninstrument", "wrap"]

logger = logging.getLogger("tokentrail.adapters")

_C = TypeVar("_C")

_MARK = "__tokentrail_original__"


@dataclass(frozen=True)
class _Target:
    """One public SDK method to track: `module.cls.attr`; `kind` is "create" or "stream" (a helper)."""

    sdk: str
    module: str
    cls: str
    attr: str
    kind: str
    api: str  # "openai.chat", "openai.responses", "anthropic"


_TARGETS: tuple[_Target, ...] = (
    _Target("openai", "openai.resources.chat.completions", "Completions", "create", "create", "openai.chat"),
    _Target(
        "openai", "openai.resources.chat.completions", "AsyncCompletions", "create", "create", "openai.chat"
    ),
    _Target("openai", "openai.resources.responses", "Responses", "create", "create", "openai.responses"),
    _Target("openai", "openai.resources.responses", "AsyncResponses", "create", "create", "openai.responses"),
    _Target("openai", "openai.resources.responses", "Responses", "stream", "stream", "openai.responses"),
    _Target("openai", "openai.resources.responses", "AsyncResponses", "stream", "stream", "openai.responses"),
    _Target("anthropic", "anthropic.resources.messages", "Messages", "create", "create", "anthropic"),
    _Target("anthropic", "anthropic.resources.messages", "AsyncMessages", "create", "create", "anthropic"),
    _Target("anthropic", "anthropic.resources.messages", "Messages", "stream", "stream", "anthropic"),
    _Target("anthropic", "anthropic.resources.messages", "AsyncMessages", "stream", "stream", "anthropic"),
)

SUPPORTED = ("openai", "anthropic")


@dataclass
class _Settings:
    tracker: Any = None  # a Tracker, or None for the process default at call time
    include_stream_usage: bool = True

    def resolve(self) -> Any:
        if self.tracker is not None:
            return self.tracker
        from tokentrail.tracker import get_tracker

        return get_tracker()


_global = _Settings()
_patched: dict[tuple[type, str], Any] = {}  # (class, attribute) -> the original function
_lock = threading.Lock()


# -- public API -------------------------------------------------------------------------------------------


def instrument(
    tracker: Any = None, providers: Iterable[str] | None = None, *, include_stream_usage: bool = True
) -> list[str]:
    """Track every call the installed SDKs make, in every client, sync and async, streamed or not.

    `tracker` receives the records (None: `tokentrail.get_tracker()` at each call); `providers`
    limits the SDKs ("openai", "anthropic"); SDKs that are not installed are skipped. Calling it again
    is harmless (nothing is patched twice; the latest tracker and options apply). Returns the SDKs
    instrumented. `uninstrument()` restores the original methods.
    """
    wanted = SUPPORTED if providers is None else tuple(str(p).lower() for p in providers)
    done: list[str] = []
    with _lock:
        _global.tracker = tracker
        _global.include_stream_usage = include_stream_usage
        for target in _TARGETS:
            if target.sdk not in wanted:
                continue
            cls = _load_class(target)
            if cls is None:
                continue
            current = cls.__dict__.get(target.attr)
            if current is None:
                continue
            if target.sdk not in done:
                done.append(target.sdk)
            if (cls, target.attr) in _patched:
                continue
            _patched[(cls, target.attr)] = current
            setattr(cls, target.attr, _make_wrapper(current, target, _global))
    return done


def uninstrument() -> None:
    """Restore every method `instrument()` replaced (clients built by `wrap()` stay wrapped)."""
    with _lock:
        for (cls, attr), original in _patched.items():
            setattr(cls, attr, original)
        _patched.clear()


def instrumented() -> list[str]:
    """The `module.Class.method` names currently patched by `instrument()`."""
    return sorted(f"{cls.__module__}.{cls.__qualname__}.{attr}" for cls, attr in _patched)


def wrap(client: _C, tracker: Any = None, *, include_stream_usage: bool = True) -> _C:
    """Track the calls of this one client object (openai or anthropic, sync or async) and return it.

    Only this client's resource objects get tracking methods; other clients and the SDK classes are
    untouched. Wrapping twice is harmless. Calls through a wrapped client are recorded once into
    `tracker`, even when `instrument()` is also active.
    """
    settings = _Settings(tracker, include_stream_usage)
    module = type(client).__module__.split(".", 1)[0]
    paths: tuple[tuple[str, ...], ...]
    if module == "openai":
        paths = (("chat", "completions"), ("responses",))
    elif module == "anthropic":
        paths = (("messages",),)
    else:
        raise TypeError(f"tokentrail.wrap supports openai and anthropic clients, not {type(client).__name__}")
    for path in paths:
        resource: Any = client
        try:
            for name in path:
                resource = getattr(resource, name)
        except Exception:
            logger.debug("client %s has no %s", type(client).__name__, ".".join(path), exc_info=True)
            continue
        for target in _TARGETS:
            if target.sdk != module or target.cls != type(resource).__name__:
                continue
            existing = resource.__dict__.get(target.attr)
            if existing is not None and hasattr(existing, _MARK):
                continue  # wrapped already
            original = _patched.get((type(resource), target.attr)) or getattr(
                type(resource), target.attr, None
            )
            if original is None:
                continue
            original = getattr(original, _MARK, original)
            setattr(resource, target.attr, _make_wrapper(original, target, settings).__get__(resource))
    return client


# -- patching ------------------------------------------------------------------------------------------------


def _load_class(target: _Target) -> type | None:
    try:
        module = importlib.import_module(target.module)
    except ImportError:
        return None
    except Exception:
        logger.debug("cannot import %s", target.module, exc_info=True)
        return None
    cls = getattr(module, target.cls, None)
    return cls if isinstance(cls, type) else None


def _marked(function: Any, original: Any) -> Any:
    setattr(function, _MARK, original)
    return function


def _make_wrapper(original: Any, target: _Target, settings: _Settings) -> Any:
    """A function to put in place of `original` (a plain function taking the resource as `self`)."""
    if target.kind == "stream":

        @functools.wraps(original)
        def stream_helper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _untracked(kwargs):
                return original(self, *args, **kwargs)
            kwargs = _with_stream_usage(target, settings, kwargs, streaming=True)
            manager = original(self, *args, **kwargs)
            return _TrackedManager(manager, lambda: _Call.start(self, target, settings, kwargs))

        return _marked(stream_helper, original)

    if target.cls.startswith("Async") or inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def acreate(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _untracked(kwargs):
                return await original(self, *args, **kwargs)
            streaming = kwargs.get("stream") is True
            kwargs = _with_stream_usage(target, settings, kwargs, streaming=streaming)
            call = _Call.start(self, target, settings, kwargs)
            try:
                response = await original(self, *args, **kwargs)
            except BaseException:
                call.failed()
                raise
            if streaming:
                return call.tracked_stream(response, asynchronous=True)
            call.finish_response(response)
            return response

        return _marked(acreate, original)

    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _untracked(kwargs):
            return original(self, *args, **kwargs)
        streaming = kwargs.get("stream") is True
        kwargs = _with_stream_usage(target, settings, kwargs, streaming=streaming)
        call = _Call.start(self, target, settings, kwargs)
        try:
            response = original(self, *args, **kwargs)
        except BaseException:
            call.failed()
            raise
        if streaming:
            return call.tracked_stream(response, asynchronous=False)
        call.finish_response(response)
        return response

    return _marked(create, original)


def _untracked(kwargs: Mapping[str, Any]) -> bool:
    """Raw/streaming-response requests (`with_raw_response`) return HTTP wrappers: pass them through."""
    headers = kwargs.get("extra_headers")
    if not isinstance(headers, Mapping):
        return False
    return any(str(key).lower() == "x-stainless-raw-response" for key in headers)


def _given(value: object) -> bool:
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit")


def _with_stream_usage(
    target: _Target, settings: _Settings, kwargs: dict[str, Any], *, streaming: bool
) -> dict[str, Any]:
    if (
        streaming
        and target.api == "openai.chat"
        and settings.include_stream_usage
        and not _given(kwargs.get("stream_options"))
    ):
        return {**kwargs, "stream_options": {"include_usage": True}}
    return kwargs


# -- one call ------------------------------------------------------------------------------------------------


def _provider_of(resource: Any, target: _Target) -> str:
    if target.sdk == "openai":
        name = type(getattr(resource, "_client", None)).__name__
        return "azure" if "Azure" in name else "openai"
    return "anthropic"


def _int_or_none(value: object) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _estimate_input(kwargs: Mapping[str, Any], model: str | None) -> int:
    """A local count of the prompt (0 when it cannot be counted cheaply)."""
    if not model:
        return 0
    try:
        from tokentrail.tokens.count import count_tokens

        total = 0
        messages = kwargs.get("messages")
        if isinstance(messages, list):
            total += count_tokens(messages, model)
        prompt = kwargs.get("input")
        if isinstance(prompt, (str, list)):
            total += count_tokens(prompt, model)
        system = kwargs.get("system") or kwargs.get("instructions")
        if isinstance(system, str):
            total += count_tokens(system, model)
        return total
    except Exception:
        logger.debug("could not count the prompt for a budget reservation", exc_info=True)
        return 0


class _Call:
    """The tracking state of one SDK call, from the request to its record."""

    __slots__ = (
        "context",
        "done",
        "first_event_at",
        "model",
        "provider",
        "reservation",
        "started",
        "tracker",
    )

    def __init__(self, tracker: Any, provider: str, model: str | None) -> None:
        self.tracker = tracker
        self.provider = provider
        self.model = model
        self.reservation: Any = None
        self.context: contextvars.Context | None = None
        self.done = False
        self.first_event_at: float | None = None
        self.started = time.perf_counter()

    @classmethod
    def start(cls, resource: Any, target: _Target, settings: _Settings, kwargs: Mapping[str, Any]) -> _Call:
        """Begin tracking; reserves budget room first (and raises `BudgetExceeded` when there is none)."""
        try:
            model = kwargs.get("model")
            call = cls(
                settings.resolve(), _provider_of(resource, target), model if isinstance(model, str) else None
            )
        except Exception:
            logger.debug("tokentrail could not start tracking a call", exc_info=True)
            call = cls(None, target.sdk, None)
            call.done = True
            return call
        if getattr(call.tracker, "budgets", None) is not None:
            try:
                max_output = None
                for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
                    max_output = _int_or_none(kwargs.get(key))
                    if max_output is not None:
                        break
                call.reservation = call.tracker.reserve(
                    call.model,
                    call.provider,
                    input_tokens=_estimate_input(kwargs, call.model),
                    max_output_tokens=max_output,
                )
            except BudgetExceeded:
                raise
            except Exception:
                logger.debug("tokentrail could not reserve budget for a call", exc_info=True)
        call.started = time.perf_counter()
        return call

    def discard(self) -> None:
        """Stop tracking without a record (another wrapper records this call)."""
        if not self.done:
            self.done = True
            if self.reservation is not None:
                try:
                    self.reservation.release()
                except Exception:
                    logger.debug("tokentrail could not release a reservation", exc_info=True)

    def failed(self) -> None:
        """The request raised: no record; give the reserved room back and count the error."""
        if self.done:
            return
        self.done = True
        try:
            if self.reservation is not None:
                self.reservation.release()
            count = getattr(self.tracker, "_count", None)
            if count is not None:
                count("call_errors")
        except Exception:
            logger.debug("tokentrail could not account for a failed call", exc_info=True)

    def finish_response(self, response: object) -> None:
        if self.done:
            return
        self.done = True
        try:
            from tokentrail.adapters import capture

            self._record(capture(response, self.provider))
        except Exception:
            logger.debug("tokentrail could not record a call", exc_info=True)

    def tracked_stream(self, stream: Any, *, asynchronous: bool) -> Any:
        try:
            from tokentrail.adapters.streams import stream_accumulator

            accumulator = stream_accumulator(self.provider)
            self.context = contextvars.copy_context()
        except Exception:
            logger.debug("tokentrail could not track a stream", exc_info=True)
            self.failed()
            return stream
        if asynchronous:
            return TrackedAsyncStream(stream, self, accumulator)
        return TrackedStream(stream, self, accumulator)

    def finish_stream(self, accumulator: StreamAccumulator, *, aborted: bool) -> None:
        if self.done:
            return
        self.done = True
        try:
            accumulator.close(aborted=aborted)
            captured = accumulator.captured()
            if self.context is None:
                self._record(captured)
                return
            try:
                run = self.context.run
                run(self._record, captured)  # in the caller's scope, wherever the stream ends
            except RuntimeError:  # that context is entered right now (a collection inside it)
                self._record(captured)
        except Exception:
            logger.debug("tokentrail could not record a stream", exc_info=True)

    def _record(self, captured: Captured) -> None:
        duration_ms = (time.perf_counter() - self.started) * 1000.0
        model = captured.model or self.model
        record = functools.partial(
            self.tracker.record,
            captured.usage,
            model=model,
            provider=captured.provider if captured.provider != "unknown" else self.provider,
            duration_ms=duration_ms,
            provider_cost=captured.provider_cost,
            context=dict(captured.price_context) or None,
        )
        if self.reservation is None:
            record()
            return
        with self.reservation:  # a record made inside settles it; a failure releases it
            record()


# -- stream proxies --------------------------------------------------------------------------------------------


class TrackedStream:
    """The SDK's `Stream`, unchanged to its reader, feeding each event to tokentrail as it passes."""

    __slots__ = ("__weakref__", "_tt_accumulator", "_tt_call", "_tt_stream")

    def __init__(self, stream: Any, call: _Call, accumulator: StreamAccumulator) -> None:
        self._tt_stream = stream
        self._tt_call = call
        self._tt_accumulator = accumulator

    def __iter__(self) -> TrackedStream:
        return self

    def __next__(self) -> Any:
        try:
            event = next(self._tt_stream)
        except StopIteration:
            self._tt_finish(aborted=False)
            raise
        except BaseException:
            self._tt_finish(aborted=True)
            raise
        self._tt_feed(event)
        return event

    def _tt_feed(self, event: object) -> None:
        call = self._tt_call
        if call.first_event_at is None:
            call.first_event_at = time.perf_counter()
        try:
            self._tt_accumulator.feed(event)
        except Exception:
            logger.debug("tokentrail could not read a stream event", exc_info=True)

    def _tt_finish(self, *, aborted: bool) -> None:
        self._tt_call.finish_stream(self._tt_accumulator, aborted=aborted)

    def __enter__(self) -> TrackedStream:
        enter = getattr(self._tt_stream, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, *exc_info: object) -> Any:
        try:
            exit_ = getattr(self._tt_stream, "__exit__", None)
            return None if exit_ is None else exit_(*exc_info)
        finally:
            self._tt_finish(aborted=True)

    def close(self) -> None:
        try:
            self._tt_stream.close()
        finally:
            self._tt_finish(aborted=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tt_stream, name)

    def __repr__(self) -> str:
        return f"<tracked {self._tt_stream!r}>"

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._tt_finish(aborted=True)


class TrackedAsyncStream:
    """The SDK's `AsyncStream`, unchanged to its reader, feeding each event to tokentrail."""

    __slots__ = ("__weakref__", "_tt_accumulator", "_tt_call", "_tt_stream")

    def __init__(self, stream: Any, call: _Call, accumulator: StreamAccumulator) -> None:
        self._tt_stream = stream
        self._tt_call = call
        self._tt_accumulator = accumulator

    def __aiter__(self) -> TrackedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        try:
            event = await self._tt_stream.__anext__()
        except StopAsyncIteration:
            self._tt_finish(aborted=False)
            raise
        except BaseException:  # errors and cancellation: record what was seen
            self._tt_finish(aborted=True)
            raise
        TrackedStream._tt_feed(self, event)  # type: ignore[arg-type]
        return event

    def _tt_finish(self, *, aborted: bool) -> None:
        self._tt_call.finish_stream(self._tt_accumulator, aborted=aborted)

    async def __aenter__(self) -> TrackedAsyncStream:
        enter = getattr(self._tt_stream, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, *exc_info: object) -> Any:
        try:
            exit_ = getattr(self._tt_stream, "__aexit__", None)
            return None if exit_ is None else await exit_(*exc_info)
        finally:
            self._tt_finish(aborted=True)

    async def close(self) -> None:
        try:
            await self._tt_stream.close()
        finally:
            self._tt_finish(aborted=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tt_stream, name)

    def __repr__(self) -> str:
        return f"<tracked {self._tt_stream!r}>"

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._tt_finish(aborted=True)


class _TrackedManager:
    """The SDK's stream-helper manager (`messages.stream(...)`, `chat.completions.stream(...)`).

    Entering it makes the request as the SDK does and returns the SDK's own helper stream, whose
    underlying raw stream is swapped for a tracked one, so every event the helper reads is seen.
    """

    __slots__ = ("_tt_call", "_tt_manager", "_tt_start")

    def __init__(self, manager: Any, start: Callable[[], _Call]) -> None:
        self._tt_manager = manager
        self._tt_start = start
        self._tt_call: _Call | None = None

    def _tt_track(self, helper: Any, *, asynchronous: bool) -> Any:
        call = self._tt_call
        if call is None:
            return helper
        raw = getattr(helper, "_raw_stream", None)
        if raw is None or isinstance(raw, (TrackedStream, TrackedAsyncStream)):
            call.discard()  # not readable here, or already tracked by the patched create()
            return helper
        try:
            helper._raw_stream = call.tracked_stream(raw, asynchronous=asynchronous)
        except Exception:
            logger.debug("tokentrail could not track a stream helper", exc_info=True)
        return helper

    def __enter__(self) -> Any:
        self._tt_call = self._tt_start()
        try:
            helper = self._tt_manager.__enter__()
        except BaseException:
            self._tt_call.failed()
            raise
        return self._tt_track(helper, asynchronous=False)

    def __exit__(self, *exc_info: Any) -> Any:
        return self._tt_manager.__exit__(*exc_info)

    async def __aenter__(self) -> Any:
        self._tt_call = self._tt_start()
        try:
            helper = await self._tt_manager.__aenter__()
        except BaseException:
            self._tt_call.failed()
            raise
        return self._tt_track(helper, asynchronous=True)

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._tt_manager.__aexit__(*exc_info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tt_manager, name)
