"""`track_llm_call`: record the calls a hand-rolled agent makes, as a decorator or a context helper.

    @tt.track_llm_call
    def ask(prompt: str) -> ChatCompletion:        # returns a provider response (or a tt.Usage)
        return client.chat.completions.create(model="gpt-4o", messages=[...])

    @tt.track_llm_call(provider="anthropic", agent="planner")
    async def plan(task: str) -> Message: ...

    with tt.track_llm_call(model="gpt-4o", provider="openai") as call:
        body = requests.post(url, json=payload).json()
        call.record(body)                             # a response (object or JSON body) or a tt.Usage

The returned response is read with `tokentrail.capture()` (any supported provider, SDK object or raw
JSON body) and recorded on `tracker` (None: `tokentrail.get_tracker()` at call time) with the call's
duration. `model=` and `provider=` given here win over what the response says (`provider` also picks
the adapter). Tracking never raises into the call: failures are logged at debug level. When the
function (or the `with` body) raises before anything was recorded, nothing is recorded and the
tracker counts it under `error_counts["call_errors"]`; the exception propagates unchanged.

Streams are not followed: a decorated function that returns a stream records what `capture()` reads
from the stream object (usually `unknown`); use `tokentrail.instrument()` / `wrap()` for streamed calls.
With `instrument()` on as well, an instrumented SDK call made inside records the call (with this
call's agent, session, user, tool and tags) and `track_llm_call` does not: each call is recorded once.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar, overload

from tokentrail._types import Usage

__all__ = ["LLMCall", "LLMCallRecorder", "track_llm_call"]

logger = logging.getLogger("tokentrail.adapters")

_F = TypeVar("_F", bound=Callable[..., Any])


def resolve_tracker(tracker: Any) -> Any:
    if tracker is not None:
        return tracker
    from tokentrail.tracker import get_tracker

    return get_tracker()


def count_error(tracker: Any) -> None:
    """Count a failed call on `tracker` (the same counter `instrument()` uses); never raises."""
    try:
        count = getattr(resolve_tracker(tracker), "_count", None)
        if count is not None:
            count("call_errors")
    except Exception:
        logger.debug("tokentrail could not count a failed call", exc_info=True)


class LLMCall:
    """The settings of `track_llm_call(...)`: a decorator and a (sync or async) context manager."""

    def __init__(
        self,
        *,
        model: str | None = None,
        provider: str | None = None,
        tracker: Any = None,
        context: Mapping[str, str] | None = None,
        agent: str | None = None,
        session: str | None = None,
        user: str | None = None,
        tool: str | None = None,
        tags: str | Iterable[str] | None = None,
    ) -> None:
        self.model = model
        self.provider = provider
        self.tracker = tracker
        self.context = None if context is None else dict(context)
        self.attribution: dict[str, Any] = {
            key: value
            for key, value in (
                ("agent", agent),
                ("session", session),
                ("user", user),
                ("tool", tool),
                ("tags", tags),
            )
            if value is not None
        }
        self._active: list[LLMCallRecorder] = []

    # -- decorator -----------------------------------------------------------------------------------

    def __call__(self, func: _F) -> _F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_tracked(*args: Any, **kwargs: Any) -> Any:
                call = LLMCallRecorder(self)
                try:
                    result = await func(*args, **kwargs)
                except BaseException:
                    call.failed()
                    raise
                finally:
                    call.close()
                call.record(result)
                return result

            return async_tracked  # type: ignore[return-value]

        @functools.wraps(func)
        def tracked(*args: Any, **kwargs: Any) -> Any:
            call = LLMCallRecorder(self)
            try:
                result = func(*args, **kwargs)
            except BaseException:
                call.failed()
                raise
            finally:
                call.close()
            call.record(result)
            return result

        return tracked  # type: ignore[return-value]

    # -- context manager -----------------------------------------------------------------------------

    def __enter__(self) -> LLMCallRecorder:
        call = LLMCallRecorder(self)
        self._active.append(call)
        return call

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        call = self._active.pop() if self._active else None
        if call is not None:
            call.close()
            if exc_type is not None:
                call.failed()

    async def __aenter__(self) -> LLMCallRecorder:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


class LLMCallRecorder:
    """One tracked call in progress; `record(response)` records it (once), timed from its start."""

    __slots__ = ("_scope", "_settings", "claim", "done", "started")

    def __init__(self, settings: LLMCall) -> None:
        from tokentrail._claims import open_claim
        from tokentrail.scope import enter_scope, scope

        self._settings = settings
        self.done = False
        # an instrumented SDK call made inside records this call, with this call's attribution
        self._scope = enter_scope(scope(**settings.attribution)) if settings.attribution else None
        self.claim = open_claim("track_llm_call")
        self.started = time.perf_counter()

    def close(self) -> None:
        """The call's code has returned: stop offering the claim and leave the scope."""
        from tokentrail._claims import close_claim
        from tokentrail.scope import exit_scope

        close_claim(self.claim)
        if self._scope is not None:
            exit_scope(self._scope)
            self._scope = None

    def record(self, response: object) -> Any:
        """Record `response` (a provider response, a JSON body, or a `tokentrail.Usage`).

        Returns the `Record`, or None when this call was already recorded (here, or by an instrumented
        SDK call made inside) or tracking failed.
        """
        if self.done:
            return None
        self.done = True
        if self.claim.taken:
            return None  # an instrumented SDK call inside recorded it
        duration_ms = (time.perf_counter() - self.started) * 1000.0
        settings = self._settings
        try:
            if isinstance(response, Usage):
                usage, model, provider, context, reported = response, None, None, None, None
            else:
                from tokentrail.adapters import capture

                captured = capture(response, settings.provider)
                usage, model, reported = captured.usage, captured.model, captured.provider_cost
                provider = None if captured.provider == "unknown" else captured.provider
                context = dict(captured.price_context) or None
            if settings.context:
                context = {**(context or {}), **settings.context}
            return resolve_tracker(settings.tracker).record(
                usage,
                model=settings.model or model,
                provider=settings.provider or provider,
                duration_ms=duration_ms,
                provider_cost=reported,
                context=context,
                **settings.attribution,
            )
        except Exception:
            logger.debug("tokentrail could not record a call", exc_info=True)
            return None

    def failed(self) -> None:
        """The call raised before it was recorded: no record, one `call_errors` count."""
        if not self.done:
            self.done = True
            count_error(self._settings.tracker)


@overload
def track_llm_call(func: _F, /) -> _F: ...


@overload
def track_llm_call(
    func: None = None,
    /,
    *,
    model: str | None = None,
    provider: str | None = None,
    tracker: Any = None,
    context: Mapping[str, str] | None = None,
    agent: str | None = None,
    session: str | None = None,
    user: str | None = None,
    tool: str | None = None,
    tags: str | Iterable[str] | None = None,
) -> LLMCall: ...


def track_llm_call(
    func: Callable[..., Any] | None = None,
    /,
    *,
    model: str | None = None,
    provider: str | None = None,
    tracker: Any = None,
    context: Mapping[str, str] | None = None,
    agent: str | None = None,
    session: str | None = None,
    user: str | None = None,
    tool: str | None = None,
    tags: str | Iterable[str] | None = None,
) -> Any:
    """Record the provider response a function returns (sync or async), or a `with` block's call.

    `@track_llm_call` alone, or `@track_llm_call(model=, provider=, tracker=, context=, agent=…)`;
    `with track_llm_call(...) as call: call.record(response)` (also `async with`). `context` adds
    price context (e.g. {"service_tier": "flex"}); agent, session, user, tool and tags override the
    active scope's attribution. See the module documentation.
    """
    settings = LLMCall(
        model=model,
        provider=provider,
        tracker=tracker,
        context=context,
        agent=agent,
        session=session,
        user=user,
        tool=tool,
        tags=tags,
    )
    return settings if func is None else settings(func)
