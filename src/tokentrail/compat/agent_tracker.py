"""`create_token_tracker(name, parent_tracker=…)`: a tracker per agent, in a tree.

Each `AgentTokenTracker` is a node of one `Tracker` (`tracker.child(name)`): children's calls count in
their parents' totals because the node's path is a prefix of theirs, not because numbers are copied up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tokentrail._record import Record, SummaryRow
from tokentrail._types import Usage
from tokentrail.tracker import Tracker

__all__ = ["AgentTokenTracker", "UsageTotals", "create_token_tracker"]

logger = logging.getLogger("tokentrail.compat")


@dataclass(frozen=True)
class UsageTotals:
    """Token and cost totals of a group of calls.

    `cost` prefers what the provider reported: calls whose provider (or client library, e.g. LiteLLM's
    `response_cost`) reported a cost count at that cost, the others at our catalog price.
    `computed_cost` is our catalog price of every priced call; `provider_cost` the reported sum.
    """

    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: Decimal
    computed_cost: Decimal
    provider_cost: Decimal | None
    unpriced_calls: int
    duration_ms: float

    @classmethod
    def from_row(cls, row: SummaryRow) -> UsageTotals:
        usage = row.usage
        reported = row.provider_cost
        # calls with a reported cost: swap our price of them for theirs
        cost = row.cost if reported is None else row.cost - _units(row.compared_cost_units) + reported
        return cls(
            row.calls,
            usage.input_tokens,
            usage.output_tokens,
            usage.input_tokens + usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
            cost,
            row.cost,
            reported,
            row.unpriced_calls,
            row.duration_ms,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost": str(self.cost),
            "computed_cost": str(self.computed_cost),
            "provider_cost": None if self.provider_cost is None else str(self.provider_cost),
            "unpriced_calls": self.unpriced_calls,
            "duration_ms": self.duration_ms,
        }


class AgentTokenTracker:
    """One agent's view of a shared tracker tree."""

    def __init__(
        self,
        node: Tracker,
        *,
        enable_detailed_logging: bool = False,
        track_per_model: bool = True,
        track_per_provider: bool = True,
    ) -> None:
        self.node = node
        self.enable_detailed_logging = enable_detailed_logging
        self.track_per_model = track_per_model
        self.track_per_provider = track_per_provider

    @property
    def name(self) -> str:
        return self.node.name or ""

    def child(self, name: str, **options: bool) -> AgentTokenTracker:
        return create_token_tracker(name, parent_tracker=self, **options)

    def track(
        self,
        response_or_usage: object,
        model: str | None = None,
        provider: str | None = None,
        *,
        duration_ms: float | None = None,
        provider_cost: Decimal | str | float | None = None,
        tool: str | None = None,
    ) -> Record:
        """Record one call from a provider response (SDK object or JSON) or a `tokentrail.Usage`."""
        if isinstance(response_or_usage, Usage):
            usage = response_or_usage
            context: Mapping[str, str] | None = None
        else:
            from tokentrail.adapters import capture

            captured = capture(response_or_usage, provider)
            usage, context = captured.usage, dict(captured.price_context) or None
            model = model or captured.model
            provider = provider or captured.provider
            if provider_cost is None:
                provider_cost = captured.provider_cost
        record = self.node.record(
            usage,
            model,
            provider,
            duration_ms=duration_ms,
            provider_cost=provider_cost,
            context=context,
            tool=tool,
        )
        if self.enable_detailed_logging:
            logger.info(
                "agent=%s model=%s input=%d output=%d reasoning=%d cache_read=%d cost=%s",
                "/".join(record.path),
                record.model,
                usage.input_tokens,
                usage.output_tokens,
                usage.reasoning_tokens,
                usage.cache_read_tokens,
                record.cost,
            )
        return record

    def get_total_usage(self, include_children: bool = True) -> UsageTotals:
        return UsageTotals.from_row(self.node.totals(include_children=include_children))

    def get_model_breakdown(self) -> dict[str, UsageTotals]:
        """Totals per model (empty when created with `track_per_model=False`)."""
        return self._breakdown("model") if self.track_per_model else {}

    def get_provider_breakdown(self) -> dict[str, UsageTotals]:
        """Totals per provider (empty when created with `track_per_provider=False`)."""
        return self._breakdown("provider") if self.track_per_provider else {}

    def _breakdown(self, key: str) -> dict[str, UsageTotals]:
        rows = sorted(self.node.summary(by=(key,)), key=lambda row: str(row.group[key]))
        return {str(row.group[key]): UsageTotals.from_row(row) for row in rows}

    def summary_text(self, detailed: bool = True) -> str:
        total = self.get_total_usage()
        lines = [
            f"Token usage: {self.name or 'root'}",
            f"  calls: {total.calls}  input: {total.input_tokens}  output: {total.output_tokens}"
            f"  reasoning: {total.reasoning_tokens}  cache read: {total.cache_read_tokens}",
            f"  cost: ${total.cost}"
            + (f"  ({total.unpriced_calls} unpriced)" if total.unpriced_calls else ""),
        ]
        if detailed:
            for title, breakdown in (
                ("model", self.get_model_breakdown()),
                ("provider", self.get_provider_breakdown()),
            ):
                for key, row in breakdown.items():
                    lines.append(
                        f"  {title} {key}: calls {row.calls}, tokens {row.total_tokens}, cost ${row.cost}"
                    )
            own = self.get_total_usage(include_children=False)
            lines.append(f"  own calls (without children): {own.calls}, cost ${own.cost}")
        return "\n".join(lines)

    def print_summary(self, detailed: bool = True) -> None:
        print(self.summary_text(detailed))

    def save_to_file(self, path: str | Path) -> Path:
        """Write totals, breakdowns and every record of this node and below as JSON (`reports.export`)."""
        from tokentrail.reports.export import save

        return save(self.node, path)

    def reset_stats(self) -> int:
        """Forget this node's records and its children's; returns how many were dropped."""
        return self.node.reset()


def create_token_tracker(
    name: str,
    parent_tracker: AgentTokenTracker | Tracker | None = None,
    enable_detailed_logging: bool = False,
    track_per_model: bool = True,
    track_per_provider: bool = True,
) -> AgentTokenTracker:
    """A tracker for agent `name`, below `parent_tracker` (an agent tracker or a `Tracker`) if given,
    else the root of a new in-memory tree."""
    if isinstance(parent_tracker, AgentTokenTracker):
        parent: Tracker = parent_tracker.node
    elif parent_tracker is None:
        parent = Tracker()
    else:
        parent = parent_tracker
    return AgentTokenTracker(
        parent.child(name),
        enable_detailed_logging=enable_detailed_logging,
        track_per_model=track_per_model,
        track_per_provider=track_per_provider,
    )


def _units(units: int) -> Decimal:
    from tokentrail._money import units_to_decimal

    return units_to_decimal(units)
