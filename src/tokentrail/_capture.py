"""The capture queue: instrumented calls hand their response to a worker thread, off the caller's path.

On the caller's thread an instrumented call only takes its timestamps, reserves budget room, copies
its context (the active scope) and appends the capture to its tracker's queue. One daemon thread per
process then reads the usage, prices it, builds the record and runs the sinks, in the order the calls
finished. Every read of a tracker drains its queue first, on the reading thread, so what a program
recorded is there when it reads it. Queues are drained at interpreter exit, by `Tracker.close()` /
`flush()`, and before `os.fork()` (the child starts with empty queues and its own worker).

The worker is woken only when it sleeps for lack of work; after a batch it lingers a few milliseconds,
so a steady stream of calls appends without waking anyone.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["CaptureQueue", "drain_all"]

_LINGER_SECONDS = 0.005  # after a batch the worker waits this long for more before it sleeps

Work = Callable[[Any], object]


class _Worker:
    """The process's capture thread and how to wake it."""

    __slots__ = ("exiting", "idle", "ready", "start_lock", "thread", "wake")

    def __init__(self) -> None:
        self.ready: deque[CaptureQueue] = deque()  # queues with captures to process
        self.idle = False  # asleep until woken (not lingering)
        self.wake = threading.Lock()
        self.wake.acquire()  # released to wake the sleeping worker
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()
        self.exiting = False  # after the exit drain, captures are processed where they are made

    def start(self) -> None:
        with self.start_lock:
            if self.thread is None:
                thread = threading.Thread(target=self.run, name="tokentrail-capture", daemon=True)
                thread.start()
                self.thread = thread

    def run(self) -> None:
        ready = self.ready
        while True:
            while ready:
                queue = ready.popleft()
                queue._scheduled = False
                with contextlib.suppress(BaseException):  # a sink raised SystemExit or the like: keep serving
                    queue.drain()
            time.sleep(_LINGER_SECONDS)
            if ready:
                continue
            self.idle = True
            if ready:  # a capture arrived between the check and the flag
                self.idle = False
                continue
            self.wake.acquire()
            self.idle = False

    def notify(self) -> None:
        """Wake the worker when it sleeps (no system call while it works or lingers)."""
        if self.idle:
            self.idle = False
            try:  # noqa: SIM105  # on the caller's path: cheaper than contextlib.suppress
                self.wake.release()
            except RuntimeError:  # another thread woke it at the same moment
                pass


_worker = _Worker()
_queues: weakref.WeakSet[CaptureQueue] = weakref.WeakSet()


class CaptureQueue:
    """One tracker tree's pending captures: `(context, work, argument)`, run as `context.run(work, argument)`.

    `background=False` runs each capture at once on the thread that makes it (the synchronous mode).
    `on_error` is told about an exception a capture let escape (the capture is then dropped).
    """

    __slots__ = ("__weakref__", "_busy", "_lock", "_on_error", "_pending", "_scheduled", "background")

    def __init__(self, on_error: Callable[[Exception], object], *, background: bool = True) -> None:
        self.background = background
        self._on_error = on_error
        self._pending: deque[tuple[contextvars.Context, Work, Any]] = deque()
        self._lock = threading.RLock()
        self._busy = False  # a thread is processing (set before an item leaves `_pending`)
        self._scheduled = False  # in the worker's ready list
        _queues.add(self)
        _register_exit_drain()

    def submit(self, context: contextvars.Context, work: Work, argument: Any) -> None:
        """Process `work(argument)` inside `context`, after every capture submitted before it."""
        if not self.background or _worker.exiting:
            self.drain()
            self._run(context, work, argument)
            return
        self._pending.append((context, work, argument))
        if not self._scheduled:
            self._scheduled = True
            worker = _worker
            worker.ready.append(self)
            if worker.thread is None:
                worker.start()
            elif worker.idle:
                worker.notify()

    @property
    def pending(self) -> bool:
        """Whether captures are waiting or being processed."""
        return bool(self._pending) or self._busy

    def drain(self) -> None:
        """Process every pending capture, in order, on this thread (waiting for one the worker holds).

        A sink that reads its tracker while a capture is being processed on its thread does not
        recurse: it sees the records made so far.
        """
        if not self._pending and not self._busy:
            return
        with self._lock:
            if self._busy:
                return  # re-entered from a sink of the capture this thread is processing
            self._busy = True
            try:
                pending = self._pending
                while pending:
                    context, work, argument = pending.popleft()
                    self._run(context, work, argument)
            finally:
                self._busy = False

    def _run(self, context: contextvars.Context, work: Work, argument: Any) -> None:
        try:
            context.run(work, argument)
        except Exception as exc:  # never into anyone's call
            with contextlib.suppress(Exception):
                self._on_error(exc)

    def _reset_after_fork(self) -> None:
        self._pending = deque()  # the parent's captures: the parent records them
        self._lock = threading.RLock()
        self._busy = False
        self._scheduled = False


def drain_all() -> None:
    """Process every pending capture of every tracker (at exit and before a fork)."""
    for queue in list(_queues):
        with contextlib.suppress(Exception):  # at exit or in a fork hook: nothing to raise into
            queue.drain()


def _drain_at_exit() -> None:
    _worker.exiting = True  # captures made from here on are processed where they are made
    drain_all()


def _register_exit_drain() -> None:
    """(Re-)register the exit drain so it runs before the exit hooks of stores opened so far
    (exit hooks run last-registered first): records reach a ledger before it closes."""
    atexit.unregister(_drain_at_exit)
    atexit.register(_drain_at_exit)


def _after_fork_in_child() -> None:
    global _worker
    _worker = _Worker()
    for queue in list(_queues):
        queue._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=drain_all, after_in_child=_after_fork_in_child)
