"""The in-memory store: records kept in compact columns, partitioned by what they share.

Layout, chosen for a short write path and ≈ 60 bytes a record:

- every distinct combination of the non-numeric fields (model, provider, attribution, price rule,
  status, …) is stored once as a `_Key`;
- a key's records are split by UTC hour into `_Cell`s; a cell holds its records in arrays: timestamp,
  id sequence and cost (in 10**-12 USD) as `array('q')`, the six common token counts interleaved in one
  `array('I')`, the duration as `array('d')`;
- `append` only queues a record; queued records move into the columns in batches of 512. A batch of one
  agent's calls to one model (the usual case) is recognised in one pass that compares each record with
  the first by identity and is keyed by one lookup; a mixed batch costs one cached lookup a record.
  Then C-level passes (`map`, `fromlist`, `sum`) fill the columns;
- anything rare (media tokens, more than 2**32 tokens, a cost finer than 10**-12 USD, a provider-reported
  cost, a pre-call input estimate) goes to small per-cell side tables;
- each cell keeps the sums of its records up to date as they are written, so a summary adds up cells and
  scans rows only in the hours that `since`/`until` cut through;
- `prune` empties the columns of old cells but keeps their sums; `reprice` keeps, per price version, the
  repriced records' new cost and the vectors that move a group's sums from the recorded cost to it.
"""

from __future__ import annotations

import heapq
import operator
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from functools import partial
from itertools import compress, repeat, starmap
from operator import and_, floordiv, is_
from typing import Any

from tokentrail._record import Attributed, Attribution, GroupValue, Record, SummaryRow
from tokentrail._types import RARE_FIELDS, TOKEN_FIELDS, PriceRule, Usage, UsageStatus
from tokentrail.stores._session_rows import SessionQuery, SessionRow, add_cell, matches, sort_rows
from tokentrail.stores.base import (
    CALLS,
    COST,
    DURATION,
    GROUP_KEYS,
    HOUR_US,
    NON_TOKEN,
    TIME_KEYS,
    TIMED,
    TIMED_OUTPUT,
    TOKENS,
    VECTOR_SIZE,
    Aggregate,
    PriceFunction,
    Query,
    check_version_label,
    filter_options,
    group_values,
    provider_cost_units,
    record_vector,
    reprice_vectors,
)

__all__ = ["MemoryStore"]

# Counts read from every Usage, in this order: the compact ones (kept in the token column), then the
# rare ones (all zero, and requests == 1, for a compact row).
_COMPACT = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
_RARE = (*(name for name in TOKEN_FIELDS if name not in _COMPACT and name != "requests"), "requests")
_COUNTED = (*_COMPACT, *_RARE)
_counts = operator.attrgetter(*_COUNTED)
_INPUT_AT, _OUTPUT_AT = TOKEN_FIELDS.index("input_tokens"), TOKEN_FIELDS.index("output_tokens")
# What tells a compact row apart: the rare counts a Usage does not summarize, its `_rare_units` flag
# (False only when every one of RARE_FIELDS is 0) and requests == 1.
_RARE_TEST = " | ".join(
    [*(f"u.{name}" for name in _RARE[:-1] if name not in RARE_FIELDS), "u._rare_units", "(u.requests ^ 1)"]
)

# Two list comprehensions compiled from the field names: plain attribute reads in a loop are the
# cheapest way CPython has to read many slots of many objects.
_scan_namespace: dict[str, Any] = {}
exec(
    "def flat_counts(usages):\n"
    f"    return [n for u in usages for n in ({', '.join(f'u.{name}' for name in _COMPACT)})]\n"
    "def rare_counts(usages):\n"
    f"    return [{_RARE_TEST} for u in usages]\n"
    # What the store's keys are made of, by identity where the objects are interned or shared. The
    # last item is True for a record with nothing for the side tables (reported cost, estimate, time to
    # first token): the one read of those fields the write path makes.
    "def fast_keys(records):\n"
    "    return [(r.model, r.provider, id(r.attribution), id(r.price_rule), r.unpriced_reason,\n"
    "             r.cost_units is None, r.id >> 48, id((u := r.usage).status), u.reason, r.context is None,\n"
    "             r.provider_cost is r.estimated_input_tokens is r.ttft_ms is None)\n"
    "            for r in records]\n",
    _scan_namespace,
)
_fast_keys: Callable[[list[Record]], list[tuple[object, ...]]] = _scan_namespace["fast_keys"]


# True when every record has the first one's key, no context, nothing for the side tables and only the
# compact counts: the usual batch (one agent's calls to one model). Checked by identity where the objects
# are shared, stopping at the first record that differs, so it costs a mixed batch almost nothing.
exec(
    "def same_shape(records):\n"
    "    first = records[0]\n"
    "    model, provider, attribution, rule = first.model, first.provider, first.attribution, first.price_rule\n"
    "    unpriced_reason, unpriced = first.unpriced_reason, first.cost_units is None\n"
    "    status, reason = first.usage.status, first.usage.reason\n"
    "    low = first.id >> 48 << 48\n"
    "    high = low + (1 << 48)\n"
    "    for r in records:\n"
    "        if not (\n"
    "            r.attribution is attribution and r.price_rule is rule and r.model == model\n"
    "            and r.provider == provider and r.unpriced_reason == unpriced_reason\n"
    "            and (r.cost_units is None) is unpriced and low <= r.id < high\n"
    "            and (u := r.usage).status is status and u.reason == reason\n"
    "            and r.context is None and r.provider_cost is None\n"
    "            and r.estimated_input_tokens is None and r.ttft_ms is None\n"
    f"            and not ({_RARE_TEST})\n"
    "        ):\n"
    "            return False\n"
    "    return True\n",
    _scan_namespace,
)
_same_shape: Callable[[list[Record]], bool] = _scan_namespace["same_shape"]
_PLAIN = 10  # index of the "no side-table values" flag in a fast key
_plain_of = operator.itemgetter(_PLAIN)
_flat_counts: Callable[[list[Usage]], list[int]] = _scan_namespace["flat_counts"]
_any_rare: Callable[[list[Usage]], list[int]] = _scan_namespace["rare_counts"]
_usage_of = operator.attrgetter("usage")
_status_of = operator.attrgetter("status")
_reason_of = operator.attrgetter("reason")
_model_of = operator.attrgetter("model")
_provider_of = operator.attrgetter("provider")
_attribution_of = operator.attrgetter("attribution")
_rule_of = operator.attrgetter("price_rule")
_unpriced_reason_of = operator.attrgetter("unpriced_reason")
_cost_of = operator.attrgetter("cost_units")
_id_of = operator.attrgetter("id")
_context_of = operator.attrgetter("context")
_timestamp_of = operator.attrgetter("timestamp_us")
_duration_of = operator.attrgetter("duration_ms")
_provider_cost_of = operator.attrgetter("provider_cost")
_estimate_of = operator.attrgetter("estimated_input_tokens")
_ttft_of = operator.attrgetter("ttft_ms")
_non_token_of = operator.attrgetter("non_token_units")
_PLAIN_RARE = (*(0 for _ in _RARE[:-1]), 1)
_WIDTH = len(_COMPACT)
_SLOT = tuple(TOKENS + TOKEN_FIELDS.index(name) for name in _COUNTED)  # vector index of each count
_REQUESTS = TOKENS + TOKEN_FIELDS.index("requests")
_OUTPUT = TOKENS + TOKEN_FIELDS.index("output_tokens")

_COST_SCALE = 10**12  # cost column unit: 10**-12 USD
_MAX_COST = (2**63 - 1) * 10**12  # larger costs go to the side table
_MAX_STORED = 2**63 - 1  # _MAX_COST in the cost column's unit
_SEQUENCE_MASK = (1 << 48) - 1
_NO_DURATION = -1.0
_FAST_CACHE_LIMIT = 16_384
_COMPLETE = UsageStatus.COMPLETE


class _Cell:
    """The records of one key in one UTC hour, and their sums (kept up to date on every write)."""

    __slots__ = (
        "costs",
        "durations",
        "estimates",
        "exact_costs",
        "hour",
        "kept_span",
        "non_token",
        "pruned",
        "reported",
        "sequences",
        "sums",
        "timestamps",
        "tokens",
        "ttfts",
        "wide",
    )

    def __init__(self, hour: int) -> None:
        self.hour = hour
        self.timestamps = array("q")  # µs since the epoch
        self.sequences = array("q")  # the low 48 bits of the record id
        self.costs = array("q")  # in 10**-12 USD (0 when unpriced or in exact_costs)
        self.tokens = array("I")  # the _COMPACT counts per record (zeros for a wide record)
        self.durations = array("d")  # ms; _NO_DURATION when none was given
        self.wide: dict[int, tuple[int, ...]] | None = None  # index → all _COUNTED counts
        self.exact_costs: dict[int, int] | None = None  # index → cost units the cost column cannot hold
        self.reported: dict[int, Decimal] | None = None  # index → provider-reported cost
        self.estimates: dict[int, int] | None = None  # index → pre-call estimated input tokens
        self.ttfts: dict[int, float] | None = None  # index → time to first token (ms)
        self.non_token: dict[int, int] | None = None  # index → non-zero part of its cost not paid for tokens
        self.sums: list[int | float] = _zero_vector()  # the aggregate vector of all its records
        self.pruned = 0  # records counted in `sums` whose columns `prune` dropped
        self.kept_span: tuple[int, int] | None = None  # earliest and latest timestamp of those records

    def __len__(self) -> int:
        return len(self.durations)

    def timestamp(self, index: int) -> int:
        return self.timestamps[index]


def _zero_vector() -> list[int | float]:
    vector: list[int | float] = [0] * VECTOR_SIZE
    vector[DURATION] = 0.0
    return vector


class _Key(Attributed):
    """The fields many records share, stored once, with the key's cells by hour."""

    __slots__ = (
        "attribution",
        "cells",
        "context",
        "id_prefix",
        "model",
        "priced",
        "provider",
        "rule",
        "unpriced_reason",
        "usage_reason",
        "usage_status",
    )

    def __init__(
        self,
        model: str | None,
        provider: str | None,
        attribution: Attribution,
        rule: PriceRule | None,
        priced: bool,
        unpriced_reason: str | None,
        usage_status: UsageStatus,
        usage_reason: str | None,
        context: tuple[tuple[str, str], ...] | None,
        id_prefix: int,
    ) -> None:
        self.model = model
        self.provider = provider
        self.attribution = attribution
        self.rule = rule
        self.priced = priced
        self.unpriced_reason = unpriced_reason
        self.usage_status = usage_status
        self.usage_reason = usage_reason
        self.context = context
        self.id_prefix = id_prefix
        self.cells: dict[int, _Cell] = {}

    @property
    def status(self) -> str:
        return self.usage_status.value


@dataclass(slots=True)
class _Repriced:
    """One record's cost in a price version, and the vectors that move its group's sums there."""

    key: _Key
    hour: int
    timestamp_us: int
    cost_units: int | None
    rule: PriceRule | None
    unpriced_reason: str | None
    vectors: list[tuple[bool, list[int | float]]]
    non_token_units: int = 0


class MemoryStore:
    """Keeps every record in compact columns; summaries sum columns, not records.

    `append` only queues the record (a deque append, safe from any thread without a lock); queued
    records are moved into the columns in batches, with C-level passes over the batch, when the queue
    is full or before any read.
    """

    def __init__(self, batch_size: int = 512) -> None:
        self._lock = threading.Lock()
        self._batch_size = batch_size
        self._pending: deque[Record] = deque()
        self._keys: dict[tuple[object, ...], _Key] = {}
        self._fast: dict[tuple[object, ...], _Key] = {}  # fast key → key
        self._fast_alive: list[tuple[Attribution, PriceRule | None]] = []  # what the fast keys' ids name
        self._rule_signatures: dict[int, tuple[PriceRule, str]] = {}
        self._versions: dict[str, dict[int, _Repriced]] = {}  # price version → record id → its cost
        self.rejected = 0  # malformed records dropped (a Record built by hand with impossible values)

    def __len__(self) -> int:
        with self._lock:
            self._flush()
            return sum(len(cell) for key in self._keys.values() for cell in key.cells.values())

    # -- writing ---------------------------------------------------------------------------------------

    def append(self, record: Record) -> None:
        """Store one record; safe to call from any number of threads at once."""
        pending = self._pending
        pending.append(record)
        if len(pending) >= self._batch_size:
            with self._lock:
                self._flush()

    def _flush(self) -> None:
        """Move every queued record into the columns (caller holds the lock)."""
        pending = self._pending
        fast = self._fast
        while pending:
            batch = list(starmap(pending.popleft, repeat((), min(len(pending), self._batch_size))))
            keys: list[_Key | None] | None = None
            try:
                if _same_shape(batch):  # one key for all, and nothing for the side tables
                    first = _fast_keys(batch[:1])[0]
                    key = fast.get(first) or self._fast_entry(batch[0], first)
                else:
                    fast_keys = _fast_keys(batch)
                    keys = self._keys_of(batch, fast_keys)
                    plain = list(map(_plain_of, fast_keys)).count(True) == len(batch)
            except Exception:  # a malformed record: find the keys one by one
                keys = [self._safe_key(record) for record in batch]
                plain = False
            if keys is None:
                self._store_group(key, batch, True, True)
            else:
                self._store_groups(keys, batch, plain)

    def _store_groups(self, keys: list[_Key | None], batch: list[Record], plain: bool) -> None:
        """Store a batch of records with different keys, one group per key."""
        first = keys[0]
        if first is not None and keys.count(first) == len(keys):
            self._store_group(first, batch, plain)
            return
        groups: dict[_Key | None, list[Record]] = {}
        for key, record in zip(keys, batch, strict=True):
            group = groups.get(key)
            if group is None:
                groups[key] = [record]
            else:
                group.append(record)
        for key, group in groups.items():
            if key is None:
                for record in group:
                    self._reject(record)
            else:
                self._store_group(key, group, plain)

    def _store_group(self, key: _Key, batch: list[Record], plain: bool, compact: bool = False) -> None:
        """`plain`: no record of the batch has a value for the side tables (reported cost, …);
        `compact`: none has a count outside the compact ones (both already checked)."""
        try:
            self._store(key, batch, plain, compact)  # raises only before it changes anything
        except Exception:
            for record in batch:
                try:
                    self._store(key, [record])
                except Exception:
                    self._reject(record)

    def _safe_key(self, record: Record) -> _Key | None:
        try:
            return self._key_for(record)
        except Exception:
            return None

    def _reject(self, record: object) -> None:
        """Drop a record the store cannot hold (not a well-formed Record): counted and logged."""
        self.rejected += 1
        import logging

        logging.getLogger("tokentrail").exception("tokentrail: memory store rejected %r", record)

    def _keys_of(self, batch: list[Record], fast_keys: list[tuple[object, ...]]) -> list[_Key | None]:
        """The key of each record: one cached dict lookup each for the usual record."""
        found: list[_Key | None] = list(map(self._fast.get, fast_keys))
        if None in found:
            for i, record in enumerate(batch):
                if found[i] is not None:
                    continue
                if record.context is not None:  # a mapping: not part of the fast key
                    found[i] = self._key_for(record)
                else:
                    found[i] = self._fast_entry(record, fast_keys[i])
        return found

    def _store(self, key: _Key, batch: list[Record], plain: bool = False, compact: bool = False) -> None:
        """Add one key's records to its cells (caller holds the lock)."""
        timestamps = list(map(_timestamp_of, batch))
        hour = min(timestamps) // HOUR_US
        if max(timestamps) // HOUR_US == hour:
            self._store_hour(self._cell_for(key, hour), key.priced, batch, timestamps, plain, compact)
            return
        by_hour: dict[int, list[Record]] = {}
        for record, timestamp in zip(batch, timestamps, strict=True):
            by_hour.setdefault(timestamp // HOUR_US, []).append(record)
        for hour, part in by_hour.items():
            cell = self._cell_for(key, hour)
            self._store_hour(cell, key.priced, part, list(map(_timestamp_of, part)), plain, compact)

    def _store_hour(
        self,
        cell: _Cell,
        priced: bool,
        batch: list[Record],
        timestamps: list[int],
        plain: bool,
        compact: bool,
    ) -> None:
        """Append records of one cell: column-wise when all are regular, else one by one."""
        try:
            usages = list(map(_usage_of, batch))
            flat = _flat_counts(usages)
            costs = list(map(_cost_of, batch)) if priced else None
            # A cost goes in the column in 10**-12 USD when it is a multiple of that: floor division
            # leaves remainders in [0, scale), so the quotients add up to the sum exactly when none has one.
            stored = None if costs is None else list(map(floordiv, costs, repeat(_COST_SCALE)))
            cost_sum = 0 if costs is None else sum(costs)
            regular = (
                (compact or not any(_any_rare(usages)))
                and not (max(flat[0::_WIDTH]) | max(flat[1::_WIDTH])) >> 32
                and (
                    plain
                    or (
                        list(map(_provider_cost_of, batch)).count(None) == len(batch)
                        and list(map(_estimate_of, batch)).count(None) == len(batch)
                        and list(map(_ttft_of, batch)).count(None) == len(batch)
                    )
                )
                and (
                    stored is None
                    or (
                        type(cost_sum) is int
                        and sum(stored) * _COST_SCALE == cost_sum
                        and min(stored) > -_MAX_STORED
                        and max(stored) < _MAX_STORED
                    )
                )
            )
        except Exception:
            regular = False
        if regular and _atomically(
            cell, lambda: self._extend(cell, batch, timestamps, flat, stored, cost_sum)
        ):
            return
        for record in batch:
            if not _atomically(cell, partial(self._store_one, cell, record)):
                self._reject(record)

    @staticmethod
    def _extend(
        cell: _Cell,
        batch: list[Record],
        timestamps: list[int],
        flat: list[int],
        stored_costs: list[int] | None,
        cost_sum: int,
    ) -> None:
        """Append regular records: compact counts, a cost the column holds, nothing reported."""
        count = len(batch)
        sums = cell.sums
        cell.timestamps.fromlist(timestamps)
        cell.sequences.fromlist(list(map(and_, map(_id_of, batch), repeat(_SEQUENCE_MASK))))
        if stored_costs is None:
            cell.costs.fromlist([0] * count)
        else:
            non_tokens = list(map(_non_token_of, batch))
            if non_tokens.count(0) != count:
                start = len(cell.durations)
                side = cell.non_token if cell.non_token is not None else {}
                side.update((start + i, units) for i, units in enumerate(non_tokens) if units)
                cell.non_token = side
                sums[NON_TOKEN] += sum(non_tokens)
            cell.costs.fromlist(stored_costs)
            sums[COST] += cost_sum
        cell.tokens.fromlist(flat)
        for j in range(_WIDTH):
            sums[_SLOT[j]] += sum(flat[j::_WIDTH])
        sums[CALLS] += count
        sums[_REQUESTS] += count
        durations = list(map(_duration_of, batch))
        missing = durations.count(None)
        output = flat[1::_WIDTH]
        timed_output = sum(output)
        if missing:
            timed_output -= sum(compress(output, map(is_, durations, repeat(None))))
            durations = [_NO_DURATION if duration is None else duration for duration in durations]
        sums[DURATION] += sum(durations) - missing * _NO_DURATION
        sums[TIMED] += count - missing
        sums[TIMED_OUTPUT] += timed_output
        cell.durations.fromlist(durations)

    @staticmethod
    def _store_one(cell: _Cell, record: Record) -> None:
        """Append one record with whatever the columns cannot hold in the cell's side tables."""
        counts: tuple[int, ...] = _counts(record.usage)
        index = len(cell)
        cost = record.cost_units or 0
        stored_cost, remainder = divmod(cost, _COST_SCALE)
        if remainder or not -_MAX_COST < cost < _MAX_COST:
            if cell.exact_costs is None:
                cell.exact_costs = {}
            cell.exact_costs[index] = cost
            stored_cost = 0
        cell.timestamps.append(record.timestamp_us)
        cell.sequences.append(record.id & _SEQUENCE_MASK)
        cell.costs.append(stored_cost)
        if counts[_WIDTH:] == _PLAIN_RARE and not (counts[0] | counts[1]) >> 32:
            cell.tokens.extend(counts[:_WIDTH])
        else:
            cell.tokens.extend((0,) * _WIDTH)
            if cell.wide is None:
                cell.wide = {}
            cell.wide[index] = counts
        cell.durations.append(_NO_DURATION if record.duration_ms is None else record.duration_ms)
        reported = record.provider_cost
        if reported is not None:
            if cell.reported is None:
                cell.reported = {}
            cell.reported[index] = reported
        estimate = record.estimated_input_tokens
        if estimate is not None:
            if cell.estimates is None:
                cell.estimates = {}
            cell.estimates[index] = estimate
        ttft = record.ttft_ms
        if ttft is not None:
            if cell.ttfts is None:
                cell.ttfts = {}
            cell.ttfts[index] = ttft
        if record.non_token_units and record.cost_units is not None:
            if cell.non_token is None:
                cell.non_token = {}
            cell.non_token[index] = record.non_token_units
        vector = record_vector(record, None if reported is None else provider_cost_units(reported))
        sums = cell.sums
        for i, value in enumerate(vector):
            sums[i] += value

    def _cell_for(self, key: _Key, hour: int) -> _Cell:
        cell = key.cells.get(hour)
        if cell is None:
            cell = key.cells[hour] = _Cell(hour)
        return cell

    def _fast_entry(self, record: Record, fast_key: tuple[object, ...]) -> _Key:
        """Resolve a record's key and remember it under its fast key (lock held)."""
        key = self._key_for(record)
        if len(self._fast) >= _FAST_CACHE_LIMIT:
            self._fast.clear()
            self._fast_alive.clear()
        self._fast[fast_key] = key
        self._fast_alive.append((record.attribution, record.price_rule))  # keeps fast_key's ids alive
        return key

    def _key_for(self, record: Record) -> _Key:
        """The record's key, created the first time its combination of fields is seen (lock held)."""
        usage = record.usage
        attribution = record.attribution
        rule = record.price_rule
        priced = record.cost_units is not None
        context = tuple(sorted(record.context.items())) if record.context is not None else None
        prefix = record.id >> 48
        canonical = (
            record.model,
            record.provider,
            attribution,
            self._rule_signature(rule),
            priced,
            record.unpriced_reason,
            usage.status.value,
            usage.reason,
            context,
            prefix,
        )
        key = self._keys.get(canonical)
        if key is None:
            key = self._keys[canonical] = _Key(
                record.model,
                record.provider,
                attribution,
                rule,
                priced,
                record.unpriced_reason,
                usage.status,
                usage.reason,
                context,
                prefix,
            )
        return key

    def _rule_signature(self, rule: PriceRule | None) -> str | None:
        if rule is None:
            return None
        known = self._rule_signatures.get(id(rule))
        if known is not None and known[0] is rule:
            return known[1]
        fields = [rule.provider, rule.model, rule.model_name, rule.source, str(rule.price_date), rule.variant]
        import json  # first sight of a price rule only

        signature = json.dumps([*fields, rule.prices], sort_keys=True, default=str)
        if len(self._rule_signatures) >= _FAST_CACHE_LIMIT:
            self._rule_signatures.clear()
        self._rule_signatures[id(rule)] = (rule, signature)
        return signature

    # -- reading ---------------------------------------------------------------------------------------

    def summary(self, query: Query, by: tuple[str, ...]) -> list[SummaryRow]:
        """One row per group of `by` over the records `query` selects."""
        unknown = [name for name in by if name not in GROUP_KEYS]
        if unknown:
            raise ValueError(f"cannot group by {', '.join(unknown)}; known: {', '.join(GROUP_KEYS)}")
        query.check_rollup_filters()
        parts: list[tuple[_Key, int, list[int | float], bool]] = []
        with self._lock:
            self._flush()
            version = self._version(query.prices)
            for key in self._matching_keys(query):
                for hour, cell in key.cells.items():
                    coverage = _coverage(query, hour)
                    if coverage == "all":
                        parts.append((key, hour, cell.sums[:], key.priced))
                    elif coverage == "part":
                        parts.extend(
                            (key, hour, vector, key.priced) for vector in self._row_vectors(key, cell, query)
                        )
            if version:  # the version's changes; its vectors carry their own priced flag
                keyed = replace(query, filters=tuple(f for f in query.filters if f[0] != "priced"))
                wanted = [value for name, value in query.filters if name == "priced"]
                for entry in version.values():
                    if query.in_time(entry.timestamp_us) and keyed.matches(entry.key):
                        parts.extend(
                            (entry.key, entry.hour, vector, priced)
                            for priced, vector in entry.vectors
                            if not wanted or priced in filter_options(wanted[0])
                        )
        groups: dict[tuple[GroupValue, ...], Aggregate] = {}
        for key, hour, vector, priced in parts:
            for group in group_values(key, by, hour):
                aggregate = groups.get(group)
                if aggregate is None:
                    aggregate = groups[group] = Aggregate()
                aggregate.add(vector, priced, key.status)
        rows = [
            aggregate.row(dict(zip(by, group, strict=True)))
            for group, aggregate in groups.items()
            if aggregate.vector[CALLS]  # a group a price version moved every call out of
        ]
        if any(name in TIME_KEYS for name in by):
            rows.sort(key=lambda row: [_sortable(value) for value in row.group.values()])
        else:
            rows.sort(
                key=lambda row: (-row.cost_units, -row.calls, [_sortable(v) for v in row.group.values()])
            )
        return rows

    def _row_vectors(self, key: _Key, cell: _Cell, query: Query) -> Iterator[list[int | float]]:
        for index in range(len(cell)):
            if query.in_time(cell.timestamp(index)):
                record = self._record_at(key, cell, index)
                reported = record.provider_cost
                yield record_vector(record, None if reported is None else provider_cost_units(reported))

    def history(self, query: Query, limit: int | None = None) -> list[Record]:
        """The records `query` selects, oldest first; with `limit`, only the last `limit` of them."""
        if limit is not None and limit <= 0:
            return []
        estimated = query.estimated
        with self._lock:
            self._flush()
            found: list[tuple[int, int, int, _Key, _Cell, int]] = []  # (timestamp, prefix, sequence, …)
            for key in self._matching_keys(query):
                for hour, cell in key.cells.items():
                    if _coverage(query, hour) == "none":
                        continue
                    sequences = cell.sequences
                    if estimated is not None:
                        for index in _estimated_indices(cell, estimated):
                            timestamp = cell.timestamps[index]
                            if query.in_time(timestamp):
                                found.append((timestamp, key.id_prefix, sequences[index], key, cell, index))
                        continue
                    for index, timestamp in enumerate(cell.timestamps):
                        if query.in_time(timestamp):
                            found.append((timestamp, key.id_prefix, sequences[index], key, cell, index))
            order = operator.itemgetter(0, 1, 2)
            chosen = heapq.nlargest(limit, found, key=order)[::-1] if limit is not None else found
            if limit is None:
                chosen.sort(key=order)
            records = [self._record_at(key, cell, index) for _, _, _, key, cell, index in chosen]
            if query.prices is None:
                return records
            version = self._version(query.prices)
        for i, record in enumerate(records):
            entry = version.get(record.id)
            if entry is not None:
                records[i] = replace(
                    record,
                    cost_units=entry.cost_units,
                    price_rule=entry.rule,
                    unpriced_reason=entry.unpriced_reason,
                    non_token_units=entry.non_token_units,
                )
        return records

    def reset(self, query: Query) -> int:
        """Forget the records `query` selects; returns how many were removed."""
        query.check_rollup_filters()
        removed = 0
        with self._lock:
            self._flush()
            for key in self._matching_keys(query):
                for hour, cell in list(key.cells.items()):
                    coverage = _coverage(query, hour)
                    if coverage == "all":
                        removed += len(cell) + cell.pruned
                        del key.cells[hour]
                    elif coverage == "part":
                        removed += self._cut(key, hour, cell, query)
            for version in self._versions.values():
                doomed = [
                    record_id
                    for record_id, entry in version.items()
                    if query.in_time(entry.timestamp_us) and query.matches(entry.key)
                ]
                for record_id in doomed:
                    del version[record_id]
        return removed

    # -- price versions and retention -------------------------------------------------------------------

    def reprice(self, query: Query, price_fn: PriceFunction, version_label: str) -> int:
        """Price the records `query` selects again with `price_fn` into version `version_label`; returns
        how many the version costs differently from their recorded cost. Recorded costs are kept."""
        label = check_version_label(version_label)
        records = self.history(replace(query, prices=None))
        priced = [(record, price_fn(record)) for record in records]  # may raise: nothing changed yet
        with self._lock:
            version = self._versions.setdefault(label, {})
            for record, cost in priced:
                units = cost.total_units if cost.priced else None
                non_token = cost.non_token_units if cost.priced else 0
                if units == record.cost_units and non_token == record.non_token_units:
                    version.pop(record.id, None)
                    continue
                reported = record.provider_cost
                version[record.id] = _Repriced(
                    self._key_for(record),
                    record.timestamp_us // HOUR_US,
                    record.timestamp_us,
                    units,
                    cost.rule,
                    cost.reason if units is None else None,
                    reprice_vectors(
                        record,
                        None if reported is None else provider_cost_units(reported),
                        record.cost_units,
                        units,
                        record.non_token_units,
                        non_token,
                    ),
                    non_token,
                )
            return sum(1 for record in records if record.id in version)

    def price_versions(self) -> list[str]:
        with self._lock:
            return list(self._versions)

    def _version(self, label: str | None) -> dict[int, _Repriced]:
        if label is None:
            return {}
        version = self._versions.get(label)
        if version is None:
            known = ", ".join(self._versions) or "none yet"
            raise ValueError(f"no price version {label!r} in this store (known: {known})")
        return version

    def prune(self, before_us: int) -> int:
        """Drop the records of every UTC hour ending at or before `before_us`, keeping the hours' sums:
        summaries still count them, `history` no longer lists them. Returns how many were dropped."""
        last_hour = before_us // HOUR_US  # the first hour that is kept
        dropped = 0
        with self._lock:
            self._flush()
            for key in self._keys.values():
                for hour, cell in key.cells.items():
                    if hour < last_hour and len(cell):
                        dropped += len(cell)
                        _drop_columns(cell)
        return dropped

    def raw_count(self, before_us: int) -> int:
        """How many records `prune(before_us)` would drop."""
        last_hour = before_us // HOUR_US
        with self._lock:
            self._flush()
            return sum(
                len(cell)
                for key in self._keys.values()
                for hour, cell in key.cells.items()
                if hour < last_hour
            )

    def _cut(self, key: _Key, hour: int, cell: _Cell, query: Query) -> int:
        """Rebuild a cell without the records in the query's time range (caller holds the lock)."""
        kept = [
            self._record_at(key, cell, i) for i in range(len(cell)) if not query.in_time(cell.timestamp(i))
        ]
        del key.cells[hour]
        if kept:
            self._store(key, kept)
        return len(cell) - len(kept)

    def sessions(self, asked: SessionQuery) -> tuple[int, list[SessionRow]]:
        """The session list (`SessionQuery`) from the cells' sums (no record is rebuilt). A pruned cell's
        calls keep their first and last."""
        since_us, until_us = asked.since_us, asked.until_us
        window = Query(since_us=since_us, until_us=until_us)
        found: dict[str, SessionRow] = {}
        active: set[str] = set()
        tokens_in, tokens_out = TOKENS + _INPUT_AT, TOKENS + _OUTPUT_AT
        with self._lock:
            self._flush()
            for key in self._keys.values():
                session = key.attribution.session
                if session is None or not key.cells:
                    continue
                agent = key.attribution.agent
                for hour, cell in key.cells.items():
                    sums = cell.sums
                    calls = int(sums[CALLS])
                    if not calls:
                        continue
                    stamps = cell.timestamps
                    low, high = (min(stamps), max(stamps)) if len(stamps) else (None, None)
                    if cell.kept_span is not None:
                        low = cell.kept_span[0] if low is None else min(low, cell.kept_span[0])
                        high = cell.kept_span[1] if high is None else max(high, cell.kept_span[1])
                    if low is None or high is None:  # pruned before spans were kept: the hour's bounds
                        low, high = hour * HOUR_US, (hour + 1) * HOUR_US - 1
                    totals = (
                        calls,
                        0 if key.priced else calls,
                        int(sums[COST]) if key.priced else 0,
                        int(sums[NON_TOKEN]) if key.priced else 0,
                        int(sums[tokens_in]),
                        int(sums[tokens_out]),
                        float(sums[DURATION]),
                    )
                    add_cell(found, session, totals, (low, high), agent)
                    if session not in active and _active_in(window, hour, cell):
                        active.add(session)
        rows = [
            row
            for name, row in found.items()
            if ((since_us is None and until_us is None) or name in active)
            and matches(name, row.agents, asked.search)
        ]
        sort_rows(rows, asked.sort, asked.descending)
        return len(rows), rows[asked.offset : asked.offset + asked.limit]

    def _matching_keys(self, query: Query) -> list[_Key]:
        return [key for key in self._keys.values() if key.cells and query.matches(key)]

    @staticmethod
    def _record_at(key: _Key, cell: _Cell, index: int) -> Record:
        wide = cell.wide.get(index) if cell.wide is not None else None
        counts = wide if wide is not None else cell.tokens[_WIDTH * index : _WIDTH * (index + 1)]
        usage = Usage(
            **dict(zip(_COUNTED[: len(counts)], counts, strict=True)),
            status=key.usage_status,
            reason=key.usage_reason,
        )
        cost: int | None = None
        if key.priced:
            exact = cell.exact_costs.get(index) if cell.exact_costs is not None else None
            cost = exact if exact is not None else cell.costs[index] * _COST_SCALE
        duration = cell.durations[index]
        return Record(
            id=key.id_prefix << 48 | cell.sequences[index],
            timestamp_us=cell.timestamps[index],
            usage=usage,
            model=key.model,
            provider=key.provider,
            cost_units=cost,
            price_rule=key.rule,
            unpriced_reason=key.unpriced_reason,
            duration_ms=None if duration == _NO_DURATION else duration,
            attribution=key.attribution,
            provider_cost=cell.reported.get(index) if cell.reported is not None else None,
            context=dict(key.context) if key.context is not None else None,
            estimated_input_tokens=cell.estimates.get(index) if cell.estimates is not None else None,
            ttft_ms=cell.ttfts.get(index) if cell.ttfts is not None else None,
            non_token_units=cell.non_token.get(index, 0) if cell.non_token is not None else 0,
        )


def _active_in(window: Query, hour: int, cell: _Cell) -> bool:
    """Whether a cell has a call in the window (its pruned calls count when the window holds their hour)."""
    coverage = _coverage(window, hour)
    if coverage == "all":
        return True
    if coverage == "none":
        return False
    return any(map(window.in_time, cell.timestamps))


def _drop_columns(cell: _Cell) -> None:
    """Empty a cell's columns and side tables, keeping its sums (caller holds the lock)."""
    if len(cell):
        low, high = min(cell.timestamps), max(cell.timestamps)
        if cell.kept_span is not None:
            low, high = min(low, cell.kept_span[0]), max(high, cell.kept_span[1])
        cell.kept_span = (low, high)
    cell.pruned += len(cell)
    for column in (cell.timestamps, cell.sequences, cell.costs, cell.tokens, cell.durations):
        del column[:]
    cell.wide = cell.exact_costs = cell.reported = cell.estimates = cell.ttfts = cell.non_token = None


def _atomically(cell: _Cell, change: Callable[[], None]) -> bool:
    """Apply `change` to the cell entirely or not at all; False when it failed (and was undone)."""
    marks = (
        len(cell.timestamps),
        len(cell.sequences),
        len(cell.costs),
        len(cell.tokens),
        len(cell.durations),
    )
    sums = cell.sums[:]
    try:
        change()
    except Exception:
        columns: tuple[array[Any], ...] = (
            cell.timestamps,
            cell.sequences,
            cell.costs,
            cell.tokens,
            cell.durations,
        )
        for column, mark in zip(columns, marks, strict=True):
            del column[mark:]
        cell.sums[:] = sums
        sides: tuple[dict[int, Any] | None, ...] = (
            cell.wide,
            cell.exact_costs,
            cell.reported,
            cell.estimates,
            cell.ttfts,
            cell.non_token,
        )
        for side in sides:
            if side:
                for index in [i for i in side if i >= marks[0]]:
                    del side[index]
        return False
    return True


def _estimated_indices(cell: _Cell, allowed: frozenset[bool]) -> Iterable[int]:
    """The indexes of a cell's records the `estimated` filter lets through, in order; with True alone,
    only the records that carry an estimate are visited."""
    estimates = cell.estimates or {}
    if allowed == {True}:
        return sorted(estimates)
    if allowed == {False}:
        return [index for index in range(len(cell)) if index not in estimates]
    return range(len(cell)) if allowed else ()


def _coverage(query: Query, hour: int) -> str:
    """How the hour bucket lies against the query's [since, until): "all", "part" or "none"."""
    since, until = query.since_us, query.until_us
    if since is None and until is None:
        return "all"
    start, end = hour * HOUR_US, (hour + 1) * HOUR_US
    if (since is not None and end <= since) or (until is not None and start >= until):
        return "none"
    if (since is None or start >= since) and (until is None or end <= until):
        return "all"
    return "part"


def _sortable(value: GroupValue) -> tuple[bool, str]:
    if value is None:
        return (True, "")
    return (False, value.isoformat() if isinstance(value, date) else value)
