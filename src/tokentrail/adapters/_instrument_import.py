"""Run a callback right after a module is first imported, so `instrument()` need not import every SDK.

`when_imported("google.genai.models", patch)` calls `patch()` as soon as that module has been executed
(or at once when it already is). A finder on `sys.meta_path` only watches the names asked for; it
finds their spec with the other finders and wraps the loader so the callback runs after the module
body. `forget()` drops every pending callback and removes the finder.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["forget", "when_imported"]

logger = logging.getLogger("tokentrail.adapters")

_pending: dict[str, list[Callable[[], None]]] = {}
_lock = threading.RLock()


def when_imported(module: str, callback: Callable[[], None]) -> None:
    """Call `callback()` once `module` is imported: now if it already is, else right after its import."""
    if module in sys.modules:
        callback()
        return
    with _lock:
        _pending.setdefault(module, []).append(callback)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


def forget() -> None:
    """Drop every pending callback."""
    with _lock:
        _pending.clear()
        if _FINDER in sys.meta_path:
            sys.meta_path.remove(_FINDER)


def _run(module: str) -> None:
    with _lock:
        callbacks = _pending.pop(module, [])
        if not _pending and _FINDER in sys.meta_path:
            sys.meta_path.remove(_FINDER)
    for callback in callbacks:
        try:
            callback()
        except Exception:
            logger.debug("tokentrail could not patch %s after its import", module, exc_info=True)


class _Loader(importlib.abc.Loader):
    """The module's own loader, then the callbacks."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _run(self._name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _Loader(spec.loader, fullname)
            return spec
        return None


_FINDER = _Finder()
