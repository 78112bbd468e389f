"""One session as a run: its calls as a tree (node path, or agent, → calls) with each subtree's exact cost
and share, a timeline (start, duration, time to first token), every call's detail, and the context-window
fill over the calls with the warnings a `ContextMonitor` raises for them.

Records end when the call ended (`timestamp_us`); a call's start is that minus its duration. The fill of a
call is its prompt (billed input tokens) over the model's context window, where the window is known. The
warnings are what `tracker.context()` (a `ContextMonitor` with its default thresholds, fed every record of
the session in order) raises: a threshold reached by the prompt the next call will carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from tokentrail._money import units_to_decimal
from tokentrail._types import TOKEN_FIELDS, UsageStatus
from tokentrail.tokens.limits import model_limits

if TYPE_CHECKING:
    from tokentrail._record import Record
    from tokentrail.tokens.context import ContextWarning
    from tokentrail.tracker import Tracker

_OBSERVED = (UsageStatus.COMPLETE, UsageStatus.PARTIAL)

__all__ = ["Node", "Run", "call_view", "load_run", "node_view", "run_view", "share_percent"]


@dataclass(slots=True)
class Node:
    """A node of the run: its own calls and the nodes below it; totals cover the whole subtree."""

    name: str
    path: tuple[str, ...]
    calls: list[int] = field(default_factory=list)  # indexes into `Run.records`
    children: dict[str, Node] = field(default_factory=dict)
    call_count: int = 0
    unpriced_calls: int = 0
    cost_units: int = 0
    non_token_units: int = 0  # the part of cost_units not paid for tokens (requests, searches, …)
    total_tokens: int = 0

    def add(self, record: Record) -> None:
        self.call_count += 1
        self.total_tokens += record.usage.input_tokens + record.usage.output_tokens
        if record.cost_units is None:
            self.unpriced_calls += 1
        else:
            self.cost_units += record.cost_units
            self.non_token_units += record.non_token_units


@dataclass(frozen=True, slots=True)
class Fill:
    """How full the context window was for one call (None where the window or the prompt is unknown)."""

    index: int
    tokens: int
    window: int | None

    @property
    def fraction(self) -> float | None:
        return self.tokens / self.window if self.window else None


@dataclass(slots=True)
class Run:
    """A session read back: its records in time order, their tree, fills and context warnings."""

    session: str
    records: list[Record]
    root: Node
    fills: list[Fill]
    warnings: list[tuple[int, ContextWarning]]  # (index of the call that raised it, warning)
    thresholds: tuple[float, ...]
    first_start_us: int  # when the earliest call started

    def find(self, call_id: str) -> int | None:
        """The index of the call whose id (32 hex digits) is `call_id`, or None."""
        try:
            wanted = int(call_id, 16)
        except ValueError:
            return None
        for index, record in enumerate(self.records):
            if record.id == wanted:
                return index
        return None


def start_us(record: Record) -> int:
    """When the call started: its end less its duration (its end when no duration was reported)."""
    return record.timestamp_us - round((record.duration_ms or 0.0) * 1000)


def node_key(record: Record) -> tuple[str, ...]:
    """Where a call sits in the tree: its hierarchy path, else its agent, else the session itself."""
    if record.path:
        return record.path
    return (record.agent,) if record.agent else ()


def load_run(tracker: Tracker, session: str) -> Run | None:
    """The session's run, or None when the ledger holds no call of it."""
    records = tracker.history(session=session)
    if not records:
        return None
    return build_run(session, records)


def build_run(session: str, records: list[Record]) -> Run:
    """Tree, fills and warnings of `records` (one session's calls, oldest first).

    The warnings are the ones a `ContextMonitor` with its default thresholds raises when it observes these
    calls as `tracker.context()`'s sink does (`observe(session, usage, model, provider=…)`): a threshold
    reached for the first time in the session by the prompt the next call carries (input + output −
    reasoning tokens over the window). They are worked out here from the window each fill already looked
    up, and stop being looked for once every threshold has fired (tests check them against the monitor)."""
    from tokentrail.tokens.context import ContextMonitor, ContextWarning

    root = Node(session, ())
    thresholds = ContextMonitor(candidates=()).thresholds  # its defaults
    windows: dict[tuple[str | None, str | None], int | None] = {}
    chains: dict[tuple[str, ...], tuple[Node, ...]] = {}  # node key → the nodes from the root down
    fills: list[Fill] = []
    warnings: list[tuple[int, ContextWarning]] = []
    warned: set[float] = set()
    for index, record in enumerate(records):
        key = node_key(record)
        chain = chains.get(key)
        if chain is None:
            chain = chains[key] = _chain(root, key)
        for node in chain:
            node.add(record)
        chain[-1].calls.append(index)
        fill = _fill(index, record, windows)
        fills.append(fill)
        usage = record.usage
        window = fill.window
        if (
            window
            and len(warned) < len(thresholds)
            and record.model is not None
            and usage.status in _OBSERVED
            and usage.input_tokens
        ):
            tokens = usage.input_tokens + usage.output_tokens - usage.reasoning_tokens
            utilization = tokens / window
            for threshold in thresholds:
                if utilization >= threshold and threshold not in warned:
                    warned.add(threshold)
                    warning = ContextWarning(
                        threshold, utilization, tokens, window, record.model, session, True
                    )
                    warnings.append((index, warning))
    first = min(map(start_us, records))
    return Run(session, records, root, fills, warnings, thresholds, first)


def _chain(root: Node, key: tuple[str, ...]) -> tuple[Node, ...]:
    """The nodes from `root` down to the node of `key`, made where missing."""
    chain = [root]
    node = root
    for depth, name in enumerate(key):
        child = node.children.get(name)
        if child is None:
            child = node.children[name] = Node(name, key[: depth + 1])
        chain.append(child)
        node = child
    return tuple(chain)


def _fill(index: int, record: Record, windows: dict[tuple[str | None, str | None], int | None]) -> Fill:
    key = (record.model, record.provider)
    if key not in windows:
        windows[key] = model_limits(record.model, record.provider).context_window if record.model else None
    return Fill(index, record.usage.input_tokens, windows[key])


def share_percent(part: int, whole: int) -> float:
    """`part` as a percentage of `whole`, rounded to 2 places (0 when the whole is 0)."""
    return round(part * 100 / whole, 2) if whole else 0.0


def _iso(timestamp_us: int) -> str:
    return (
        datetime.fromtimestamp(timestamp_us // 1_000_000, timezone.utc)
        .replace(microsecond=timestamp_us % 1_000_000)
        .isoformat()
    )


def _money(units: int | None) -> str | None:
    return None if units is None else str(units_to_decimal(units))


def node_view(node: Node, run: Run) -> dict[str, Any]:
    """A node and its subtree as JSON: exact cost, share of the session's cost, its own call ids."""
    return {
        "name": node.name,
        "path": list(node.path),
        "calls": node.call_count,
        "unpriced_calls": node.unpriced_calls,
        "cost_usd": _money(node.cost_units),
        "non_token_cost_usd": _money(node.non_token_units),
        "share_percent": share_percent(node.cost_units, run.root.cost_units),
        "total_tokens": node.total_tokens,
        "call_ids": [f"{run.records[i].id:032x}" for i in node.calls],
        "children": [node_view(child, run) for child in sorted_children(node)],
    }


def sorted_children(node: Node) -> list[Node]:
    """Children by cost, highest first (then by name)."""
    return sorted(node.children.values(), key=lambda child: (-child.cost_units, child.name))


def call_view(record: Record, run: Run, index: int) -> dict[str, Any]:
    """Everything known about one call: tokens and other units, price rule, both costs, status, fill."""
    usage = record.usage
    fill = run.fills[index]
    rule = record.price_rule
    reported = record.provider_cost
    return {
        "id": f"{record.id:032x}",
        "index": index,
        "ended": _iso(record.timestamp_us),
        "started": _iso(start_us(record)),
        "offset_ms": (start_us(record) - run.first_start_us) / 1000,
        "duration_ms": record.duration_ms,
        "ttft_ms": record.ttft_ms,
        "model": record.model,
        "provider": record.provider,
        "agent": record.agent,
        "user": record.user,
        "tool": record.tool,
        "path": list(record.path),
        "tags": list(record.tags),
        "status": str(usage.status),
        "reason": usage.reason,
        "units": {name: getattr(usage, name) for name in TOKEN_FIELDS if getattr(usage, name)},
        "cost_usd": _money(record.cost_units),
        "non_token_cost_usd": None if record.non_token_cost is None else str(record.non_token_cost),
        "unpriced_reason": record.unpriced_reason,
        "provider_cost_usd": None if reported is None else str(reported),
        "cost_difference_usd": None if record.cost_difference is None else str(record.cost_difference),
        "price_rule": None if rule is None else rule.as_dict(),
        "catalog_version": None if rule is None else rule.source,
        "context": None if record.context is None else dict(record.context),
        "context_window": fill.window,
        "context_fill": None if fill.fraction is None else round(fill.fraction, 6),
        "estimated_input_tokens": record.estimated_input_tokens,
    }


def run_view(run: Run, limit: int, offset: int) -> dict[str, Any]:
    """The session as JSON: totals, tree, context warnings, and a page of its calls in time order."""
    root = run.root
    records = run.records
    page = range(offset, min(offset + limit, len(records)))
    return {
        "session": run.session,
        "calls": root.call_count,
        "unpriced_calls": root.unpriced_calls,
        "cost_usd": _money(root.cost_units),
        "non_token_cost_usd": _money(root.non_token_units),
        "total_tokens": root.total_tokens,
        "first_call": _iso(records[0].timestamp_us),
        "last_call": _iso(records[-1].timestamp_us),
        "agents": sorted({r.agent for r in records if r.agent is not None}),
        "tree": node_view(root, run),
        "context": {
            "thresholds": list(run.thresholds),
            "warnings": [
                {
                    "call_id": f"{records[index].id:032x}",
                    "index": index,
                    "threshold": warning.threshold,
                    "utilization": round(warning.utilization, 6),
                    "tokens": warning.tokens,
                    "context_window": warning.context_window,
                    "model": warning.model,
                    "message": str(warning),
                }
                for index, warning in run.warnings
            ],
        },
        "limit": limit,
        "offset": offset,
        "timeline": [call_view(records[i], run, i) for i in page],
    }
