"""The store protocol every usage store implements, the query it answers, and shared aggregation.

A store is a sink (`append(record)`) that can also answer `summary`, `history` and `reset` for a
`Query`. The in-memory store is the first; SQLite and Postgres stores implement the same protocol.
Optional abilities have their own protocols: `RepricingStore` (cost records again into a named price
version, keeping the original), `NonTokenFillingStore` (fill the non-token parts of costs a ledger
stored before it kept them, from parts the caller computes) and `PruningStore` (drop old raw rows, keep
the rollups).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Protocol, runtime_checkable

from tokentrail._money import SCALE
from tokentrail._record import GroupValue, Record, SummaryRow
from tokentrail._types import TOKEN_FIELDS, Cost, PriceRule, Usage, UsageStatus

__all__ = [
    "COUNTS_FIRST",
    "COUNTS_WITH_UNITS",
    "FILTER_KEYS",
    "GROUP_KEYS",
    "ORIGINAL_PRICES",
    "RECORD_FILTERS",
    "TIME_KEYS",
    "Aggregate",
    "KeyFields",
    "NonTokenFillingStore",
    "NonTokenParts",
    "PriceFunction",
    "PruningStore",
    "Query",
    "RepricingStore",
    "Store",
    "check_version_label",
    "filter_options",
    "group_values",
    "provider_cost_units",
    "record_vector",
    "reprice_vectors",
    "time_bucket",
]

# Group keys: attribution, model, provider, one tag (a record counts once under each of its tags),
# hierarchy path ("a/b"), and UTC time buckets.
TIME_KEYS = ("hour", "day", "month")
GROUP_KEYS = ("agent", "session", "user", "tool", "model", "provider", "tag", "path", "status", *TIME_KEYS)
FILTER_KEYS = (
    "agent",
    "session",
    "user",
    "tool",
    "model",
    "provider",
    "tag",
    "status",
    "priced",
    "estimated",
)
# Filters on a record's own values, which rollups do not keep: only raw records answer them (`history`,
# `reprice`); `summary` and `reset` refuse them. `estimated`: True selects the records that carry a
# pre-call input estimate (`Record.estimated_input_tokens`), False those that do not.
RECORD_FILTERS = ("estimated",)

HOUR_US = 3_600_000_000
ORIGINAL_PRICES = "original"  # the price version of the costs as they were recorded


class KeyFields(Protocol):
    """The non-numeric fields of a record (or of a group of identical records) that queries look at."""

    @property
    def agent(self) -> str | None: ...
    @property
    def session(self) -> str | None: ...
    @property
    def user(self) -> str | None: ...
    @property
    def tool(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def path(self) -> tuple[str, ...]: ...
    @property
    def status(self) -> str: ...
    @property
    def priced(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Query:
    """Which records a query covers: field filters, a time range [since, until) and a hierarchy node.

    A filter value that is a list, tuple, set or frozenset matches any of its members.
    `path` selects a node of the hierarchy: with `include_children` its whole subtree, otherwise only
    records attributed to that node itself. `prices` names the price version that costs the records
    (one made by `RepricingStore.reprice`); None costs them as recorded. A record the version did not
    reprice keeps its recorded cost.
    """

    filters: tuple[tuple[str, object], ...] = ()
    since_us: int | None = None
    until_us: int | None = None
    path: tuple[str, ...] = ()
    include_children: bool = True
    prices: str | None = None

    @classmethod
    def build(
        cls,
        filters: dict[str, object],
        since_us: int | None = None,
        until_us: int | None = None,
        path: tuple[str, ...] = (),
        include_children: bool = True,
        prices: str | None = None,
    ) -> Query:
        """A query from keyword filters; a `prices` entry among them names the price version."""
        if "prices" in filters:
            filters = dict(filters)
            given = filters.pop("prices")
            if given is not None and not isinstance(given, str):
                raise ValueError(f"prices must be a price version name, got {type(given).__name__}")
            prices = prices if given is None else given
        unknown = sorted(set(filters) - set(FILTER_KEYS))
        if unknown:
            raise ValueError(f"unknown filter {', '.join(unknown)}; known: {', '.join(FILTER_KEYS)}")
        if prices == ORIGINAL_PRICES:
            prices = None
        return cls(tuple(sorted(filters.items())), since_us, until_us, path, include_children, prices)

    @property
    def everything(self) -> bool:
        """True when the query covers every record."""
        return (
            not self.filters
            and self.since_us is None
            and self.until_us is None
            and not self.path
            and (self.include_children)
        )

    @property
    def estimated(self) -> frozenset[bool] | None:
        """The values the `estimated` filter allows (True: has a pre-call estimate); None without it."""
        for name, wanted in self.filters:
            if name == "estimated":
                return frozenset(
                    bool(v) for v in _options(wanted) if isinstance(v, (bool, int)) and v in (0, 1)
                )
        return None

    def check_rollup_filters(self) -> None:
        """ValueError when a filter needs raw records (see `RECORD_FILTERS`): summaries and resets count
        whole hours from rollups, which do not keep what such a filter looks at."""
        for name, _ in self.filters:
            if name in RECORD_FILTERS:
                raise ValueError(
                    f"the {name!r} filter selects raw records: history() and reprice take it; "
                    "summaries and reset do not (rollups do not keep it)"
                )

    def matches(self, key: KeyFields) -> bool:
        """Whether records with these fields fall under the filters and the hierarchy node (filters on a
        record's own values, `RECORD_FILTERS`, are left to the store)."""
        path = key.path
        if self.include_children:
            if path[: len(self.path)] != self.path:
                return False
        elif path != self.path:
            return False
        for name, wanted in self.filters:
            if name in RECORD_FILTERS:
                continue
            if name == "tag":
                tags = key.tags
                if not any(tag in tags for tag in _options(wanted)):
                    return False
            elif getattr(key, name) not in _options(wanted):
                return False
        return True

    def in_time(self, timestamp_us: int) -> bool:
        return (self.since_us is None or timestamp_us >= self.since_us) and (
            self.until_us is None or timestamp_us < self.until_us
        )


def filter_options(wanted: object) -> Collection[object]:
    """The values a filter value matches (a list, tuple, set or frozenset matches any member)."""
    return _options(wanted)


def _options(wanted: object) -> Collection[object]:
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return wanted
    if isinstance(wanted, UsageStatus):
        return (wanted.value,)
    return (wanted,)


@runtime_checkable
class Store(Protocol):
    """Where records are kept and queried."""

    def append(self, record: Record) -> None: ...

    def summary(self, query: Query, by: tuple[str, ...]) -> list[SummaryRow]: ...

    def history(self, query: Query, limit: int | None = None) -> list[Record]: ...

    def reset(self, query: Query) -> int: ...


PriceFunction = Callable[[Record], Cost]
"""Prices a stored record again, e.g. `lambda r: catalog.price(r.usage, r.model, r.provider, r.timestamp)`."""


@runtime_checkable
class RepricingStore(Protocol):
    """A store that can cost its records again into a named price version, keeping the original."""

    def reprice(self, query: Query, price_fn: PriceFunction, version_label: str) -> int:
        """Price every record `query` selects with `price_fn` into version `version_label` (replacing
        that version's earlier cost of those records); returns how many of them the version now costs
        differently from their recorded cost."""
        ...

    def price_versions(self) -> list[str]:
        """The names of the price versions made so far, oldest first."""
        ...


class NonTokenParts(Protocol):
    """Computes the non-token part of stored costs for a `NonTokenFillingStore`: the code that knows prices
    implements it (`tokentrail.pricing.parts.RecomputedParts`), so stores need not."""

    def may_have_part(self, rule: PriceRule | None) -> bool:
        """Whether a cost `rule` priced can have a non-token part (False: the store need not read it)."""
        ...

    def part_of(self, record: Record) -> int:
        """The non-token part (10**-24 USD) of `record.cost_units` as `record.price_rule` priced it, or 0
        when it cannot be known exactly."""
        ...


@runtime_checkable
class NonTokenFillingStore(Protocol):
    """A store whose ledger may hold costs recorded before it kept their non-token part (a SQLite ledger
    migrated from schema v8 or older, Postgres from v4): the migration marks it, and the parts are filled
    once, from a `NonTokenParts` the caller passes (the tracker does when it opens the store)."""

    def non_token_unfilled(self) -> bool:
        """Whether the ledger still waits for `fill_non_token`."""
        ...

    def fill_non_token(self, parts: NonTokenParts) -> int:
        """Give every stored cost whose part is still 0 (recorded costs and price versions') the part
        `parts` finds, moving the rollups (hourly, daily, price versions, sessions) by as much, in one
        transaction, and clear the mark; returns how many costs gained a part (0 when it is filled
        already, e.g. by another process)."""
        ...


@runtime_checkable
class PruningStore(Protocol):
    """A store that can drop old raw rows while keeping the rollups that answer summaries."""

    def prune(self, before_us: int) -> int:
        """Drop the raw records of every UTC hour that ends at or before `before_us`; returns how many.

        Summaries over those hours still answer (from the rollups); `history` no longer lists them."""
        ...

    def raw_count(self, before_us: int) -> int:
        """How many raw records `prune(before_us)` would drop."""
        ...


def check_version_label(label: object) -> str:
    """A usable price version name, or ValueError."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError("a price version needs a non-empty name")
    if label == ORIGINAL_PRICES:
        raise ValueError(f"{ORIGINAL_PRICES!r} names the recorded costs; choose another version name")
    if len(label) > 200 or "\x00" in label:
        raise ValueError("a price version name has at most 200 characters and no NUL")
    return label


def group_values(key: KeyFields, by: tuple[str, ...], hour: int) -> list[tuple[GroupValue, ...]]:
    """The group(s) records with `key` in UTC hour bucket `hour` belong to (one per tag for "tag")."""
    groups: list[tuple[GroupValue, ...]] = [()]
    for name in by:
        values: Iterable[GroupValue]
        if name == "tag":
            values = key.tags or (None,)
        elif name == "path":
            values = ("/".join(key.path),)
        elif name in TIME_KEYS:
            values = (time_bucket(name, hour),)
        else:
            values = (getattr(key, name),)
        groups = [(*group, value) for group in groups for value in values]
    return groups


def time_bucket(name: str, hour: int) -> GroupValue:
    """The UTC bucket ("hour" → datetime, "day" → date, "month" → its first day) of an hour index."""
    start = datetime.fromtimestamp(hour * 3600, timezone.utc)
    if name == "hour":
        return start
    if name == "day":
        return start.date()
    return date(start.year, start.month, 1)


# -- aggregation ----------------------------------------------------------------------------------------
# The Usage counts a ledger schema stores, frozen (a migration means what it meant when it was released):
# COUNTS_FIRST up to SQLite v6 / Postgres v2, COUNTS_WITH_UNITS from SQLite v7 / Postgres v3 on.
COUNTS_FIRST = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "cache_audio_read_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "cache_image_read_tokens",
    "output_image_tokens",
    "input_video_tokens",
    "output_video_tokens",
    "web_searches",
    "requests",
)
COUNTS_WITH_UNITS = (
    *COUNTS_FIRST,
    "cache_video_read_tokens",
    "output_citation_tokens",
    "input_characters",
    "input_text_messages",
    "audio_ms",
    "input_audio_ms",
    "output_audio_ms",
    "input_document_pages",
    "input_annotated_document_pages",
    "input_pixels",
    "storage_searches",
    "code_executions",
    "social_searches",
    "rerank_searches",
)
# An aggregate vector: the sums every store keeps per group of records. Token sums follow TOKEN_FIELDS;
# the last is the part of the cost paid for units that are not tokens (`Record.non_token_units`).

CALLS, COST, DURATION, TIMED, TIMED_OUTPUT, PROVIDER_COST, PROVIDER_CALLS, COST_ON_PROVIDER_CALLS = range(8)
TOKENS = 8
NON_TOKEN = TOKENS + len(TOKEN_FIELDS)
VECTOR_SIZE = NON_TOKEN + 1

_STATUS_ORDER = [status.value for status in UsageStatus]  # most certain first


def sums_vector(sums: Sequence[Any]) -> list[int | float]:
    """An aggregate vector from a SQL row of sums (calls, cost, duration, timed, timed output, provider
    cost, provider calls, cost on provider calls, one per token kind, then the non-token cost); NULL sums
    are 0."""
    vector: list[int | float] = [0] * VECTOR_SIZE
    vector[CALLS] = int(sums[0] or 0)
    vector[COST] = int(sums[1] or 0)
    vector[DURATION] = float(sums[2] or 0.0)
    vector[TIMED] = int(sums[3] or 0)
    vector[TIMED_OUTPUT] = int(sums[4] or 0)
    vector[PROVIDER_COST] = int(sums[5] or 0)
    vector[PROVIDER_CALLS] = int(sums[6] or 0)
    vector[COST_ON_PROVIDER_CALLS] = int(sums[7] or 0)
    for i in range(len(TOKEN_FIELDS)):
        vector[TOKENS + i] = int(sums[8 + i] or 0)
    vector[NON_TOKEN] = int(sums[NON_TOKEN] or 0)
    return vector


def sortable(value: GroupValue) -> tuple[bool, str]:
    """A sort key for group values of one key (None last; dates by their ISO text)."""
    if value is None:
        return (True, "")
    return (False, value.isoformat() if isinstance(value, date) else value)


class Aggregate:
    """Sums aggregate vectors of one group and turns them into a `SummaryRow`."""

    __slots__ = ("compared_cost", "compared_provider", "priced_tokens", "status_counts", "unpriced", "vector")

    def __init__(self) -> None:
        self.vector: list[int | float] = [0] * VECTOR_SIZE
        self.vector[DURATION] = 0.0
        self.unpriced = 0
        self.priced_tokens = 0
        self.compared_provider = 0
        self.compared_cost = 0
        self.status_counts: dict[str, int] = {}

    def add(self, vector: list[int | float], priced: bool, status: str) -> None:
        mine = self.vector
        for i, value in enumerate(vector[:VECTOR_SIZE]):
            mine[i] += value
        calls = int(vector[CALLS])
        self.status_counts[status] = self.status_counts.get(status, 0) + calls
        if priced:
            self.priced_tokens += int(vector[TOKENS] + vector[TOKENS + 1])
            self.compared_provider += int(vector[PROVIDER_COST])
            self.compared_cost += int(vector[COST_ON_PROVIDER_CALLS])
        else:
            self.unpriced += calls

    def row(self, group: dict[str, GroupValue]) -> SummaryRow:
        v = self.vector
        seen = [s for s in _STATUS_ORDER if self.status_counts.get(s)]
        counts: dict[str, Any] = {name: int(v[TOKENS + i]) for i, name in enumerate(TOKEN_FIELDS)}
        usage = Usage(**counts, status=UsageStatus(seen[-1]) if seen else UsageStatus.COMPLETE)
        return SummaryRow(
            group=group,
            calls=int(v[CALLS]),
            unpriced_calls=self.unpriced,
            usage=usage,
            cost_units=int(v[COST]),
            priced_tokens=self.priced_tokens,
            duration_ms=float(v[DURATION]),
            timed_calls=int(v[TIMED]),
            timed_output_tokens=int(v[TIMED_OUTPUT]),
            provider_cost_units=int(v[PROVIDER_COST]),
            provider_cost_calls=int(v[PROVIDER_CALLS]),
            compared_provider_units=self.compared_provider,
            compared_cost_units=self.compared_cost,
            status_counts={s: self.status_counts[s] for s in seen},
            non_token_cost_units=int(v[NON_TOKEN]),
        )


def record_vector(record: Record, provider_cost_units: int | None) -> list[int | float]:
    """The aggregate vector of a single record."""
    vector: list[int | float] = [0] * VECTOR_SIZE
    usage = record.usage
    vector[CALLS] = 1
    vector[COST] = record.cost_units or 0
    vector[DURATION] = 0.0
    if record.duration_ms is not None:
        vector[DURATION] = record.duration_ms
        vector[TIMED] = 1
        vector[TIMED_OUTPUT] = usage.output_tokens
    if provider_cost_units is not None:
        vector[PROVIDER_COST] = provider_cost_units
        vector[PROVIDER_CALLS] = 1
        vector[COST_ON_PROVIDER_CALLS] = record.cost_units or 0
    for i, name in enumerate(TOKEN_FIELDS):
        vector[TOKENS + i] = getattr(usage, name)
    vector[NON_TOKEN] = record.non_token_units if record.cost_units is not None else 0
    return vector


def reprice_vectors(
    record: Record,
    reported_units: int | None,
    old_units: int | None,
    new_units: int | None,
    old_non_token: int = 0,
    new_non_token: int = 0,
) -> list[tuple[bool, list[int | float]]]:
    """(priced, aggregate vector) pairs that turn a record costed `old_units` into one costed `new_units`
    when added to a group's sums (None: unpriced), its non-token part `old_non_token` into `new_non_token`.
    Timing sums are left out: they do not depend on cost.

    Sums are linear, so the pairs are the old record subtracted and the new one added; when both are
    priced (or both unpriced) they merge into one vector that moves only the cost.
    """
    base = record_vector(record, reported_units)
    base[DURATION], base[TIMED], base[TIMED_OUTPUT] = 0.0, 0, 0
    pairs: list[tuple[bool, list[int | float]]] = []
    for sign, units, non_token in ((-1, old_units, old_non_token), (1, new_units, new_non_token)):
        vector: list[int | float] = [sign * value for value in base]
        vector[DURATION] = 0.0
        vector[COST] = sign * (units or 0)
        vector[NON_TOKEN] = sign * non_token if units is not None else 0
        vector[COST_ON_PROVIDER_CALLS] = sign * (units or 0) if reported_units is not None else 0
        pairs.append((units is not None, vector))
    (old_priced, minus), (new_priced, plus) = pairs
    if old_priced == new_priced:
        return [(new_priced, [a + b for a, b in zip(minus, plus, strict=True)])]
    return pairs


_UNIT = Decimal(1).scaleb(-SCALE)
_EXACT = Context(prec=1000)


def provider_cost_units(reported: Decimal) -> int:
    """A provider-reported USD amount in yocto-dollars (rounded half-even past 24 decimal places)."""
    return int(reported.quantize(_UNIT, rounding=ROUND_HALF_EVEN, context=_EXACT).scaleb(SCALE, _EXACT))
