"""`TokenTrackingMixin`: always-on tracking on an agent object.

Mix it into an agent class; the agent's calls land in a node named after the agent (`self.name`, else
the class name) of the process tracker (or `tracking_tracker` when the class or instance sets one).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

from tokentrail._record import Record
from tokentrail.compat.agent_tracker import AgentTokenTracker, UsageTotals

__all__ = ["TokenTrackingMixin"]

_C = TypeVar("_C")


class TokenTrackingMixin:
    tracking_tracker: Any = None  # a tokentrail.Tracker; None: tokentrail.get_tracker()

    @property
    def token_tracker(self) -> AgentTokenTracker:
        """This agent's node (created on first use)."""
        existing = self.__dict__.get("_tokentrail_node")
        if existing is None:
            from tokentrail.tracker import get_tracker

            root = self.tracking_tracker if self.tracking_tracker is not None else get_tracker()
            name = str(getattr(self, "name", None) or type(self).__name__)
            existing = AgentTokenTracker(root.child(name))
            self.__dict__["_tokentrail_node"] = existing
        return existing

    def track_client(self, client: _C) -> _C:
        """Wrap an openai / anthropic client so every call it makes is this agent's."""
        from tokentrail.adapters import wrap

        return wrap(client, self.token_tracker.node)

    def track_response(self, response: object, *, tool: str | None = None, **options: Any) -> Record:
        """Record a response obtained some other way (any provider's SDK object or JSON, or a Usage)."""
        return self.token_tracker.track(response, tool=tool, **options)

    def get_usage(self) -> UsageTotals:
        return self.token_tracker.get_total_usage()

    def get_cost(self) -> Decimal:
        return self.get_usage().cost

    def get_cost_breakdown(self) -> dict[str, Any]:
        """prompt (input) cost, completion (output) cost, total and per-model totals, exact Decimal USD."""
        from tokentrail.pricing.catalog import default_catalog

        node = self.token_tracker.node
        catalog = node.catalog or default_catalog()
        prompt = completion = Decimal(0)
        for record in node.history():
            if record.cost is None or record.model is None:
                continue
            # the same rule and date the record was priced with, split by direction
            cost = catalog.price(
                record.usage, record.model, record.provider, at=record.timestamp, context=record.context
            )
            prompt += cost.input
            completion += cost.output
        by_model = {model: totals.cost for model, totals in self.token_tracker.get_model_breakdown().items()}
        return {"prompt": prompt, "completion": completion, "total": self.get_cost(), "by_model": by_model}

    def get_usage_history(self) -> list[dict[str, Any]]:
        """One dict per call, oldest first: time, model, tool, tokens, cost."""
        return [
            {
                "timestamp": record.timestamp.isoformat(),
                "model": record.model,
                "provider": record.provider,
                "tool": record.tool,
                "input_tokens": record.usage.input_tokens,
                "output_tokens": record.usage.output_tokens,
                "cost": record.cost,
                "duration_ms": record.duration_ms,
            }
            for record in self.token_tracker.node.history()
        ]

    def reset_tracking(self) -> int:
        return self.token_tracker.reset_stats()
