"""tokentrail: exact token-usage and cost tracking for LLM agent systems.

The value types, errors and `price()` load with the package; the tracker, adapters, token counting
and budgets load on first use (see `_LAZY`), so `import tokentrail` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tokentrail._types import Cost, PriceRule, Usage, UsageStatus
from tokentrail.errors import (
    AdapterError,
    BudgetExceeded,
    InvalidPriceError,
    InvalidUsageError,
    PricingError,
    StoreError,
    TokentrailError,
    UnknownModelError,
)
from tokentrail.pricing.catalog import Catalog, default_catalog, price, set_default_catalog
from tokentrail.scope import current_scope, propagate, scope  # eager: the name `scope` is also a submodule

if TYPE_CHECKING:
    from tokentrail._record import Attribution, Record, SummaryRow
    from tokentrail.adapters import (
        Captured,
        StreamAccumulator,
        capture,
        capture_stream,
        instrument,
        instrumented,
        stream_accumulator,
        uninstrument,
        usage_from_response,
        usage_from_stream,
        wrap,
    )
    from tokentrail.adapters.hooks import track_llm_call
    from tokentrail.budgets import (
        Budget,
        BudgetAlert,
        BudgetConfigError,
        BudgetManager,
        BudgetStatus,
        Reservation,
        RunLimits,
    )
    from tokentrail.events import EventBus, EventSink, get_bus
    from tokentrail.exporters import LoggingSink, log_summary
    from tokentrail.integrations.langchain import TokentrailCallbackHandler
    from tokentrail.integrations.litellm import litellm_callback
    from tokentrail.scope import ScopedThreadPoolExecutor
    from tokentrail.stores.base import Store
    from tokentrail.stores.memory import MemoryStore
    from tokentrail.stores.sqlite import SQLiteStore
    from tokentrail.tokens.context import ContextMonitor, ContextReport, ContextWarning, Recommendation
    from tokentrail.tokens.count import TokenCount, count, count_tokens
    from tokentrail.tokens.drift import DriftRow, drift
    from tokentrail.tokens.images import image_tokens
    from tokentrail.tokens.limits import ModelLimits, context_window, model_limits, set_model_limits
    from tokentrail.tracker import Tracker, configure, get_tracker

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    **dict.fromkeys(("Attribution", "Record", "SummaryRow"), "tokentrail._record"),
    **dict.fromkeys(("Tracker", "configure", "get_tracker"), "tokentrail.tracker"),
    "ScopedThreadPoolExecutor": "tokentrail.scope",
    "Store": "tokentrail.stores.base",
    "MemoryStore": "tokentrail.stores.memory",
    "SQLiteStore": "tokentrail.stores.sqlite",
    **dict.fromkeys(
        (
            "Captured",
            "StreamAccumulator",
            "capture",
            "capture_stream",
            "instrument",
            "instrumented",
            "stream_accumulator",
            "uninstrument",
            "usage_from_response",
            "usage_from_stream",
            "wrap",
        ),
        "tokentrail.adapters",
    ),
    **dict.fromkeys(
        (
            "Budget",
            "BudgetAlert",
            "BudgetConfigError",
            "BudgetManager",
            "BudgetStatus",
            "Reservation",
            "RunLimits",
        ),
        "tokentrail.budgets",
    ),
    **dict.fromkeys(("TokenCount", "count", "count_tokens"), "tokentrail.tokens.count"),
    **dict.fromkeys(
        ("ContextMonitor", "ContextReport", "ContextWarning", "Recommendation"), "tokentrail.tokens.context"
    ),
    **dict.fromkeys(
        ("ModelLimits", "context_window", "model_limits", "set_model_limits"), "tokentrail.tokens.limits"
    ),
    "image_tokens": "tokentrail.tokens.images",
    **dict.fromkeys(("DriftRow", "drift"), "tokentrail.tokens.drift"),
    "track_llm_call": "tokentrail.adapters.hooks",
    "TokentrailCallbackHandler": "tokentrail.integrations.langchain",
    "litellm_callback": "tokentrail.integrations.litellm",
    **dict.fromkeys(("LoggingSink", "log_summary"), "tokentrail.exporters"),
    **dict.fromkeys(("EventBus", "EventSink", "get_bus"), "tokentrail.events"),
}
# Sub-packages reachable as attributes (`tt.events.get_bus()`) without importing them up front.
_SUBMODULES = frozenset({"analytics", "compat", "events", "reports", "stores", "testing"})


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None and name in _SUBMODULES:
        return importlib.import_module(f"tokentrail.{name}")
    if module is None:
        raise AttributeError(f"module 'tokentrail' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AdapterError",
    "Attribution",
    "Budget",
    "BudgetAlert",
    "BudgetConfigError",
    "BudgetExceeded",
    "BudgetManager",
    "BudgetStatus",
    "Captured",
    "Catalog",
    "ContextMonitor",
    "ContextReport",
    "ContextWarning",
    "Cost",
    "DriftRow",
    "EventBus",
    "EventSink",
    "InvalidPriceError",
    "InvalidUsageError",
    "LoggingSink",
    "MemoryStore",
    "ModelLimits",
    "PriceRule",
    "PricingError",
    "Recommendation",
    "Record",
    "Reservation",
    "RunLimits",
    "SQLiteStore",
    "ScopedThreadPoolExecutor",
    "Store",
    "StoreError",
    "StreamAccumulator",
    "SummaryRow",
    "TokenCount",
    "TokentrailCallbackHandler",
    "TokentrailError",
    "Tracker",
    "UnknownModelError",
    "Usage",
    "UsageStatus",
    "__version__",
    "capture",
    "capture_stream",
    "configure",
    "context_window",
    "count",
    "count_tokens",
    "current_scope",
    "default_catalog",
    "drift",
    "get_bus",
    "get_tracker",
    "image_tokens",
    "instrument",
    "instrumented",
    "litellm_callback",
    "log_summary",
    "model_limits",
    "price",
    "propagate",
    "scope",
    "set_default_catalog",
    "set_model_limits",
    "stream_accumulator",
    "track_llm_call",
    "uninstrument",
    "usage_from_response",
    "usage_from_stream",
    "wrap",
]
