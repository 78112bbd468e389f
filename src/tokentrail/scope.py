"""Attribution scopes: who a call is for, carried by `contextvars`.

    with tt.scope(agent="researcher", session="s-42", tags=["eval"]):
        ...                                  # every call recorded here is the researcher's

    @tt.scope(tool="web_search")             # also a decorator, for sync and async functions
    async def search(query): ...

Scopes nest: inner values override outer ones, tags accumulate, and a scope that names a new agent (or
passes `name=`) opens a level of the hierarchy path, so parents' totals include their children's.
asyncio tasks inherit the scope they were created in (contextvars does that); threads do not, so wrap
the function with `propagate(fn)` or submit through `ScopedThreadPoolExecutor`. `asyncio.to_thread`
already propagates.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from tokentrail._record import EMPTY_ATTRIBUTION, Attribution, intern_attribution, normalize_tags

__all__ = ["ScopedThreadPoolExecutor", "current_scope", "enter_scope", "exit_scope", "propagate", "scope"]

P = ParamSpec("P")
R = TypeVar("R")


class _Frame:
    """One entered scope: its attribution and the frame to restore on exit."""

    __slots__ = ("attribution", "previous")

    def __init__(self, attribution: Attribution, previous: _Frame | None) -> None:
        self.attribution = attribution
        self.previous = previous


_ROOT = _Frame(EMPTY_ATTRIBUTION, None)
current_frame: contextvars.ContextVar[_Frame] = contextvars.ContextVar("tokentrail_scope", default=_ROOT)


def current_scope() -> Attribution:
    """The attribution calls recorded right now would get (empty outside any scope)."""
    return current_frame.get().attribution


class scope:
    """Attribute the calls made inside to an agent, session, user, tool and tags.

    Usable as `with`, `async with` and as a decorator. One `scope` object may be entered by many
    threads or tasks at once: what it restores on exit lives in each context, not in the object.
    """

    __slots__ = ("agent", "name", "session", "tags", "tool", "user")

    def __init__(
        self,
        name: str | None = None,
        *,
        agent: str | None = None,
        session: str | None = None,
        user: str | None = None,
        tool: str | None = None,
        tags: str | Iterable[str] | None = None,
    ) -> None:
        self.name = name
        self.agent = agent
        self.session = session
        self.user = user
        self.tool = tool
        self.tags = normalize_tags(tags)

    def inside(self, outer: Attribution) -> Attribution:
        """The attribution of this scope entered inside `outer`."""
        path = outer.path
        segment = self.name
        if segment is None and self.agent is not None and self.agent != outer.agent:
            segment = self.agent
        if segment is not None:
            path = (*path, segment)
        tags = outer.tags
        if self.tags:
            tags = tuple(sorted({*tags, *self.tags})) if tags else self.tags
        return intern_attribution(
            self.agent if self.agent is not None else outer.agent,
            self.session if self.session is not None else outer.session,
            self.user if self.user is not None else outer.user,
            self.tool if self.tool is not None else outer.tool,
            tags,
            path,
        )

    def __enter__(self) -> Attribution:
        frame = current_frame.get()
        attribution = self.inside(frame.attribution)
        current_frame.set(_Frame(attribution, frame))
        return attribution

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        previous = current_frame.get().previous
        current_frame.set(previous if previous is not None else _ROOT)

    async def __aenter__(self) -> Attribution:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Run every call of `fn` inside this scope (sync or async functions)."""
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"scope() cannot decorate the generator function {fn.__qualname__}: "
                "its body runs between the caller's steps; use `with scope(...)` inside it instead"
            )
        if inspect.iscoroutinefunction(fn):
            return self._wrap_async(fn)  # type: ignore[return-value]

        @functools.wraps(fn)
        def run_in_scope(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return fn(*args, **kwargs)

        return run_in_scope

    def _wrap_async(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        async def run_in_scope(*args: P.args, **kwargs: P.kwargs) -> R:
            with self:
                return await fn(*args, **kwargs)

        return run_in_scope

    def __repr__(self) -> str:
        fields = ("name", "agent", "session", "user", "tool", "tags")
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in fields if getattr(self, f))
        return f"scope({shown})"


def enter_scope(scoped: scope) -> contextvars.Token[_Frame]:
    """Enter `scoped` from a start hook (a framework callback) rather than a `with` block.

    Leave it with `exit_scope(token)` from the matching end hook. Unlike `scope.__exit__`, leaving
    from another context than it was entered in changes nothing there (frameworks may run end hooks in
    a copy of the context).
    """
    frame = current_frame.get()
    return current_frame.set(_Frame(scoped.inside(frame.attribution), frame))


def exit_scope(token: contextvars.Token[_Frame]) -> None:
    """Leave a scope entered with `enter_scope`; harmless when called from another context."""
    with contextlib.suppress(
        ValueError, RuntimeError
    ):  # entered in another context, or left already: nothing to restore here
        current_frame.reset(token)


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` bound to the scope active now, wherever it later runs (another thread, a callback).

    Each call runs in its own copy of the captured context, so the wrapper may run in many threads at
    once: `executor.map(propagate(work), items)`.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_captured_scope(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run_in_captured_scope


class ScopedThreadPoolExecutor(ThreadPoolExecutor):
    """A `ThreadPoolExecutor` whose tasks run in the scope that was active when they were submitted."""

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        return super().submit(functools.partial(contextvars.copy_context().run, fn, *args, **kwargs))
