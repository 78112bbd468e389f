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
from collections.abc import Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from tokentrail._record import EMPTY_ATTRIBUTION, Attribution, intern_attribution, normalize_tags

__all__ = [
    "ScopeEntry",
    "ScopedThreadPoolExecutor",
    "current_scope",
    "enter_scope",
    "exit_scope",
    "propagate",
    "reentered",
    "scope",
]

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


class _HookFrame(_Frame):
    """A scope a framework entered from a start hook. Once its end hook has run it stands for the scope
    around it, in every context: frameworks may end a run in another task than the one it started in,
    where the frame cannot be popped, and it must not outlive the run there."""

    __slots__ = ("ended", "own")

    def __init__(self, attribution: Attribution, previous: _Frame) -> None:
        self.own = attribution
        self.previous = previous
        self.ended = False

    @property
    def attribution(self) -> Attribution:
        previous = self.previous
        return previous.attribution if self.ended and previous is not None else self.own

    @attribution.setter
    def attribution(self, value: Attribution) -> None:
        self.own = value


class ScopeEntry:
    """A scope entered with `enter_scope`, to leave with `exit_scope`."""

    __slots__ = ("frame", "token")

    def __init__(self, frame: _HookFrame, token: contextvars.Token[_Frame]) -> None:
        self.frame = frame
        self.token = token


def enter_scope(scoped: scope) -> ScopeEntry:
    """Enter `scoped` from a start hook (a framework callback) rather than a `with` block.

    Leave it with `exit_scope(entry)` from the matching end hook, in any context: where it cannot be
    popped (another task than it was entered in), it stops counting all the same.
    """
    outer = current_frame.get()
    frame = _HookFrame(scoped.inside(outer.attribution), outer)
    return ScopeEntry(frame, current_frame.set(frame))


def exit_scope(entry: ScopeEntry) -> None:
    """Leave a scope entered with `enter_scope`; harmless twice, or from another context."""
    entry.frame.ended = True
    with contextlib.suppress(ValueError, RuntimeError):  # another context, or left already
        current_frame.reset(entry.token)


@contextlib.contextmanager
def reentered(entry: ScopeEntry) -> Iterator[Attribution]:
    """The scope `entry` stood for, again for this block, even after its end hook ran: for a framework
    that records a call later, elsewhere (an event bus's thread), with the attribution it had."""
    token = current_frame.set(_Frame(entry.frame.own, entry.frame))
    try:
        yield entry.frame.own
    finally:
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
