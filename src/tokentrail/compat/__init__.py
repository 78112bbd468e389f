"""Familiar names from other token trackers, each a thin face over tokentrail's own engine.

See docs/coming-from.md for the mapping. Nothing here keeps its own counts: every number is read from
a `tokentrail.Tracker`'s records.
"""

from __future__ import annotations

from tokentrail.compat.agent_tracker import AgentTokenTracker, UsageTotals, create_token_tracker
from tokentrail.compat.estimator import CostEstimator, TokenCounter
from tokentrail.compat.global_tracker import GlobalTokenTracker, get_token_tracker, reset_token_tracker
from tokentrail.compat.middleware import (
    EventBroadcaster,
    MiddlewareConfig,
    RequestUsage,
    TokenTrackingMiddleware,
    UsageSummary,
)
from tokentrail.compat.mixin import TokenTrackingMixin
from tokentrail.compat.rates import COST_PRESETS, ModelRate

__all__ = [
    "COST_PRESETS",
    "AgentTokenTracker",
    "CostEstimator",
    "EventBroadcaster",
    "GlobalTokenTracker",
    "MiddlewareConfig",
    "ModelRate",
    "RequestUsage",
    "TokenCounter",
    "TokenTrackingMiddleware",
    "TokenTrackingMixin",
    "UsageSummary",
    "UsageTotals",
    "create_token_tracker",
    "get_token_tracker",
    "reset_token_tracker",
]
