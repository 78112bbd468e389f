"""The background writer the SQL stores share: `append` queues records and a daemon thread commits them in
batches (when `batch_size` are queued, every `flush_interval` seconds, on `flush()`/`close()` and at exit).

A store says how it writes what is queued (`flush`, `_write_queued`) and what closing releases
(`_release`); the thread, its wake-ups, closing and the exit hook are here.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sized
from typing import TypeVar

__all__ = ["BackgroundWriter"]

_W = TypeVar("_W", bound="BackgroundWriter")


class BackgroundWriter(ABC):
    """Queue-and-commit machinery of a store; the store sets the attributes below in its `__init__`
    (`_pending_lock` guarding `_wake`) before `_start_writer`."""

    batch_size: int
    flush_interval: float
    _pending: Sized
    _pending_lock: threading.Lock
    _wake: threading.Condition
    _closed: bool
    _pid: int
    _writer: threading.Thread | None
    _atexit: Callable[[], None]
    _JOIN_SECONDS = 5.0  # how long `close` waits for the writer thread
    _WRITE_FAILED = "tokentrail: store write failed"  # logged when a background write fails

    @abstractmethod
    def flush(self) -> None:
        """Commit every queued record now."""

    @abstractmethod
    def _write_queued(self) -> None:
        """Write what is queued, from the writer thread (keep the records queued when it fails)."""

    @abstractmethod
    def _release(self) -> None:
        """Close what the store holds (connections, files), after the writer has stopped."""

    def _start_writer(self, name: str, background: bool) -> None:
        """Start the writer thread (when `background`) and close the store at exit."""
        self._writer = None
        if background:
            self._writer = threading.Thread(target=self._run_writer, name=name, daemon=True)
            self._writer.start()
        ref = weakref.ref(self)
        self._atexit = lambda: _close_ref(ref)
        atexit.register(self._atexit)

    def close(self) -> None:
        """Flush, stop the writer and release the store (idempotent)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            with self._pending_lock:
                self._wake.notify_all()
            if self._writer is not None and self._writer is not threading.current_thread():
                self._writer.join(timeout=self._JOIN_SECONDS)
            atexit.unregister(self._atexit)
            self._release()

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run_writer(self) -> None:
        while True:
            with self._pending_lock:
                if not self._closed and len(self._pending) < self.batch_size:
                    self._wake.wait(self.flush_interval)
                if self._closed:
                    return
            try:
                self._write_queued()
            except Exception:  # the records stay queued; try again next round
                logging.getLogger("tokentrail").exception(self._WRITE_FAILED)
                time.sleep(min(self.flush_interval, 1.0))


def _close_ref(ref: weakref.ReferenceType[BackgroundWriter]) -> None:
    store = ref()
    if store is not None and os.getpid() == store._pid:
        with contextlib.suppress(Exception):
            store.close()
