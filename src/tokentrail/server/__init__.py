"""Optional local dashboard and JSON API over a ledger, plus `/metrics` (extra `tokentrail[server]`).

Names load on first use, so `tokentrail.cli` can register `serve` without importing FastAPI.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokentrail.server._app import create_app
    from tokentrail.server._auth import TokenAuth
    from tokentrail.server._bind import BindRefused, check_bind, is_loopback
    from tokentrail.server._metrics import create_metrics_app
    from tokentrail.server._readonly import ReadOnlyStore, open_read_only

__all__ = [
    "BindRefused",
    "ReadOnlyStore",
    "TokenAuth",
    "check_bind",
    "create_app",
    "create_metrics_app",
    "is_loopback",
    "open_read_only",
]

_HOMES = {
    "create_app": "_app",
    "TokenAuth": "_auth",
    "BindRefused": "_bind",
    "check_bind": "_bind",
    "is_loopback": "_bind",
    "create_metrics_app": "_metrics",
    "ReadOnlyStore": "_readonly",
    "open_read_only": "_readonly",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)
