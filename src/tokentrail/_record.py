"""What the tracker keeps: `Attribution` (who a call is for), `Record` (one tracked call) and
`SummaryRow` (the totals of a group of records).

Records carry their cost as exact integer yocto-dollars (10**-24 USD, see `_money`) so sums stay exact;
`Decimal` values are built only when read. An unpriced call has `cost_units is None` and a reason: it is
never a silent $0.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from tokentrail._money import units_to_decimal
from tokentrail._types import PriceRule, Usage

__all__ = [
    "EMPTY_ATTRIBUTION",
    "Attribution",
    "GroupValue",
    "Record",
    "SummaryRow",
    "before",
    "fresh_record",
    "intern_attribution",
    "new_record_id",
    "normalize_tags",
    "to_timestamp_us",
]

GroupValue = str | date | None  # date covers the datetime of an hour bucket


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who and what a call is attributed to: the scope fields plus the hierarchy path.

    `tags` is a sorted tuple of unique strings; `path` names the nodes from the root down (tracker
    children first, then named scopes), e.g. ("team-a", "researcher").
    """

    agent: str | None = None
    session: str | None = None
    user: str | None = None
    tool: str | None = None
    tags: tuple[str, ...] = ()
    path: tuple[str, ...] = ()


EMPTY_ATTRIBUTION = Attribution()
_interned: dict[tuple[object, ...], Attribution] = {(None, None, None, None, (), ()): EMPTY_ATTRIBUTION}
_INTERN_LIMIT = 65_536


def intern_attribution(
    agent: str | None,
    session: str | None,
    user: str | None,
    tool: str | None,
    tags: tuple[str, ...],
    path: tuple[str, ...],
) -> Attribution:
    """The shared `Attribution` with these fields, so equal attributions are usually one object.

    Identity lets stores key their caches cheaply; equality stays by content either way.
    """
    key = (agent, session, user, tool, tags, path)
    found = _interned.get(key)
    if found is None:
        if len(_interned) >= _INTERN_LIMIT:
            _interned.clear()
        found = _interned.setdefault(key, Attribution(agent, session, user, tool, tags, path))
    return found


def normalize_tags(tags: str | Iterable[str] | None) -> tuple[str, ...]:
    """Tags as a sorted tuple of unique strings; a single string is one tag."""
    if not tags:
        return ()
    if isinstance(tags, str):
        return (tags,)
    return tuple(sorted({str(tag) for tag in tags}))


class Attributed:
    """Read an `attribution`'s fields as if they were the object's own (records, store keys)."""

    __slots__ = ()
    attribution: Attribution

    @property
    def agent(self) -> str | None:
        return self.attribution.agent

    @property
    def session(self) -> str | None:
        return self.attribution.session

    @property
    def user(self) -> str | None:
        return self.attribution.user

    @property
    def tool(self) -> str | None:
        return self.attribution.tool

    @property
    def tags(self) -> tuple[str, ...]:
        return self.attribution.tags

    @property
    def path(self) -> tuple[str, ...]:
        return self.attribution.path


@dataclass(slots=True, eq=True)
class Record(Attributed):
    """One tracked call: its usage, exact cost, attribution, model and timing.

    Treat it as read-only: every sink receives the same object. `id` is a 128-bit integer, unique
    across processes and time-ordered within one (`f"{record.id:032x}"` for text).
    """

    id: int
    timestamp_us: int  # microseconds since the epoch, UTC
    usage: Usage
    model: str | None
    provider: str | None
    cost_units: int | None  # exact cost in 10**-24 USD; None when unpriced
    price_rule: PriceRule | None = None
    unpriced_reason: str | None = None
    duration_ms: float | None = None
    attribution: Attribution = EMPTY_ATTRIBUTION
    provider_cost: Decimal | None = None  # what the provider itself reported, kept beside ours
    context: Mapping[str, str] | None = None  # request context used for pricing (service tier, batch…)
    estimated_input_tokens: int | None = None  # pre-call local count, to compare with the billed input
    ttft_ms: float | None = None  # time to first token of a streamed call, in milliseconds
    non_token_units: int = 0  # the part of cost_units paid for units that are not tokens (0 when unpriced)

    @property
    def priced(self) -> bool:
        return self.cost_units is not None

    @property
    def non_token_cost(self) -> Decimal | None:
        """The part of `cost` paid for units that are not tokens (requests, searches, durations, pages,
        …; `Cost.non_token`), or None when the call could not be priced."""
        return None if self.cost_units is None else units_to_decimal(self.non_token_units)

    @property
    def cost(self) -> Decimal | None:
        """Exact USD cost, or None when the call could not be priced (see `unpriced_reason`)."""
        return None if self.cost_units is None else units_to_decimal(self.cost_units)

    @property
    def cost_difference(self) -> Decimal | None:
        """Provider-reported cost minus ours, when both are known."""
        if self.provider_cost is None or self.cost_units is None:
            return None
        return self.provider_cost - units_to_decimal(self.cost_units)

    @property
    def input_estimate_error(self) -> int | None:
        """Pre-call estimate minus billed input tokens (positive: over-estimated), when estimated."""
        if self.estimated_input_tokens is None:
            return None
        return self.estimated_input_tokens - self.usage.input_tokens

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_us // 1_000_000, timezone.utc).replace(
            microsecond=self.timestamp_us % 1_000_000
        )


def to_timestamp_us(at: datetime | date) -> int:
    """Microseconds since the epoch, UTC; naive datetimes and plain dates are read as UTC."""
    if not isinstance(at, datetime):
        if not isinstance(at, date):
            raise TypeError(f"expected a datetime or date, got {type(at).__name__}")
        at = datetime(at.year, at.month, at.day)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return (at - _EPOCH) // _ONE_US


def before(moment: datetime, span: timedelta) -> datetime:
    """`moment - span`, or the earliest datetime (in `moment`'s zone) when that would be before year 1."""
    try:
        return moment - span
    except OverflowError:
        return datetime.min.replace(tzinfo=moment.tzinfo)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


# -- record ids ---------------------------------------------------------------------------------------
# 48 bits of the process start time in ms, 32 random bits, 48 bits of a per-process sequence:
# ids sort by creation within a process and do not collide across processes.

SEQUENCE_BITS = 48
SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1


class _IdSource:
    __slots__ = ("base", "next_id")

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        started_ms = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
        self.base = (started_ms << 80) | (int.from_bytes(os.urandom(4), "big") << SEQUENCE_BITS)
        self.next_id: Callable[[], int] = itertools.count(self.base + 1).__next__  # base | sequence


ids = _IdSource()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=ids.reseed)


def new_record_id() -> int:
    return ids.next_id()


def _compile_fresh_record() -> Callable[..., Record]:
    """Generate `fresh_record(timestamp_us, usage, …)`: a Record with a new id, every other field given
    positionally in declaration order.

    The tracker's hot path: it fills the slots of a bare instance directly, about twice as fast as
    calling the dataclass (no argument tuple, no defaults); generated from `fields(Record)`, so a new
    field cannot be forgotten.
    """
    names = [f.name for f in fields(Record) if f.name != "id"]
    source = "\n".join(
        [
            f"def fresh_record({', '.join(names)}):",
            "    record = new(Record)",
            "    record.id = ids.next_id()",
            *(f"    record.{name} = {name}" for name in names),
            "    return record",
        ]
    )
    namespace: dict[str, object] = {"new": object.__new__, "Record": Record, "ids": ids}
    exec(compile(source, "<tokentrail fresh record>", "exec"), namespace)
    return namespace["fresh_record"]  # type: ignore[return-value]


fresh_record = _compile_fresh_record()


# -- summaries ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class SummaryRow:
    """Totals of one group of records (or of all of them), with exact cost and derived metrics.

    `cost` sums priced calls only; `unpriced_calls` says how many calls it leaves out. `usage` sums every
    token kind; its status is the least certain status seen (see `status_counts`).
    """

    group: dict[str, GroupValue]
    calls: int
    unpriced_calls: int
    usage: Usage
    cost_units: int
    priced_tokens: int = 0  # input + output tokens of the priced calls
    duration_ms: float = 0.0  # summed over the calls that reported a duration
    timed_calls: int = 0
    timed_output_tokens: int = 0
    provider_cost_units: int = 0  # summed over the calls whose provider reported a cost
    provider_cost_calls: int = 0
    compared_provider_units: int = 0  # provider-reported cost of the calls we priced too …
    compared_cost_units: int = 0  # … and our cost of the same calls
    status_counts: dict[str, int] = field(default_factory=dict)
    non_token_cost_units: int = 0  # the part of cost_units paid for units that are not tokens

    @property
    def cost(self) -> Decimal:
        """Exact USD cost of the priced calls."""
        return units_to_decimal(self.cost_units)

    @property
    def non_token_cost(self) -> Decimal:
        """The part of `cost` paid for units that are not tokens (requests, searches, durations, pages, …)."""
        return units_to_decimal(self.non_token_cost_units)

    @property
    def priced_calls(self) -> int:
        return self.calls - self.unpriced_calls

    @property
    def input_tokens(self) -> int:
        return self.usage.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.usage.output_tokens

    @property
    def cache_read_tokens(self) -> int:
        return self.usage.cache_read_tokens

    @property
    def cache_write_tokens(self) -> int:
        return self.usage.cache_write_tokens

    @property
    def reasoning_tokens(self) -> int:
        return self.usage.reasoning_tokens

    @property
    def total_tokens(self) -> int:
        return self.usage.total_tokens

    @property
    def cost_per_call(self) -> Decimal | None:
        """Average cost of a priced call."""
        return self.cost / self.priced_calls if self.priced_calls else None

    @property
    def cost_per_1k_tokens(self) -> Decimal | None:
        """Cost per thousand (input + output) tokens, over priced calls."""
        return self.cost * 1000 / self.priced_tokens if self.priced_tokens else None

    @property
    def average_duration_ms(self) -> float | None:
        return self.duration_ms / self.timed_calls if self.timed_calls else None

    @property
    def tokens_per_second(self) -> float | None:
        """Output tokens generated per second of call time, over calls that reported a duration."""
        return self.timed_output_tokens * 1000 / self.duration_ms if self.duration_ms > 0 else None

    @property
    def cache_hit_ratio(self) -> float | None:
        """Share of input tokens read from the prompt cache."""
        usage = self.usage
        return usage.cache_read_tokens / usage.input_tokens if usage.input_tokens else None

    @property
    def provider_cost(self) -> Decimal | None:
        """What providers reported themselves (None when none did)."""
        return units_to_decimal(self.provider_cost_units) if self.provider_cost_calls else None

    @property
    def provider_cost_difference(self) -> Decimal | None:
        """Provider-reported minus our cost, over calls both priced (positive: the provider says more)."""
        if not self.provider_cost_calls:
            return None
        return units_to_decimal(self.compared_provider_units - self.compared_cost_units)
