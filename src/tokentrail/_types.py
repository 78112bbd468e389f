"""Value types: `Usage` (what a call consumed), `Cost` (what it cost), `UsageStatus`, `PriceRule`.

Token semantics (one convention everywhere, the same as genai-prices):
`input_tokens` counts every prompt token, cached reads and cache writes included;
`cache_read_tokens`, `cache_write_tokens` are subsets of it and `cache_write_1h_tokens` is a subset of
`cache_write_tokens`. `output_tokens` counts every generated token and `reasoning_tokens` is a subset of it.
Modality counts (audio, image, video) are subsets of the direction they belong to.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from typing import Any

from tokentrail._money import units_to_decimal
from tokentrail.errors import InvalidUsageError

__all__ = ["TOKEN_FIELDS", "Cost", "CostLayout", "PriceRule", "Usage", "UsageStatus", "priced_cost"]


class UsageStatus(str, enum.Enum):
    """How much we know about a call's usage, from most to least certain."""

    COMPLETE = "complete"  # the provider reported it
    ESTIMATED = "estimated"  # counted locally
    PARTIAL = "partial"  # a stream was cut off: what was seen
    UNKNOWN = "unknown"  # nothing usable; `reason` says why

    def __str__(self) -> str:
        return self.value


_STATUS_RANK = {status: rank for rank, status in enumerate(UsageStatus)}


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call (or a sum of calls), validated on construction.

    Raises `InvalidUsageError` (a `ValueError`) for negative or non-integer counts and for
    subsets larger than their totals. Build an unusable capture with `Usage.unknown(reason)`.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    cache_audio_read_tokens: int = 0
    output_audio_tokens: int = 0
    input_image_tokens: int = 0
    cache_image_read_tokens: int = 0
    output_image_tokens: int = 0
    input_video_tokens: int = 0
    output_video_tokens: int = 0
    web_searches: int = 0
    requests: int = 1
    status: UsageStatus = UsageStatus.COMPLETE
    reason: str | None = None

    def __post_init__(self) -> None:
        if (
            _plainly_valid(self)
            and type(self.status) is UsageStatus
            and (self.reason is None or type(self.reason) is str)
        ):
            return
        self._validate()

    def _validate(self) -> None:
        """The full check: coerces int subclasses and statuses given as strings, names what is wrong."""
        for name in TOKEN_FIELDS:
            value = getattr(self, name)
            if type(value) is not int:
                if isinstance(value, int) and not isinstance(value, bool):
                    object.__setattr__(self, name, int(value))
                    continue
                raise InvalidUsageError(f"{name} must be a non-negative int, got {value!r}")
            if value < 0:
                raise InvalidUsageError(f"{name} must be a non-negative int, got {value}")
        if not isinstance(self.status, UsageStatus):
            try:
                object.__setattr__(self, "status", UsageStatus(self.status))
            except ValueError:
                allowed = ", ".join(s.value for s in UsageStatus)
                raise InvalidUsageError(f"status must be one of {allowed}, got {self.status!r}") from None
        if self.reason is not None and not isinstance(self.reason, str):
            raise InvalidUsageError(f"reason must be a str or None, got {self.reason!r}")
        _check_subsets(self)

    @classmethod
    def unknown(cls, reason: str) -> Usage:
        """A call whose usage could not be read: counted as a call, never as zero tokens."""
        return cls(status=UsageStatus.UNKNOWN, reason=reason)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        summed = {name: getattr(self, name) + getattr(other, name) for name in TOKEN_FIELDS}
        status = max(self.status, other.status, key=_STATUS_RANK.__getitem__)
        reason = self.reason if self.reason is not None else other.reason
        return Usage(**summed, status=status, reason=reason)

    def __radd__(self, other: object) -> Usage:
        if other == 0:  # lets sum() start from its default 0
            return self
        return NotImplemented

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready mapping: counts as ints, status as its string value."""
        data: dict[str, Any] = {name: getattr(self, name) for name in TOKEN_FIELDS}
        data["status"] = self.status.value
        data["reason"] = self.reason
        return data


TOKEN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Usage) if f.type in ("int", int))

# (subset, superset) pairs; each subset count may not exceed its superset.
_SUBSETS = (
    ("cache_read_tokens", "input_tokens"),
    ("cache_write_tokens", "input_tokens"),
    ("cache_write_1h_tokens", "cache_write_tokens"),
    ("reasoning_tokens", "output_tokens"),
    ("input_audio_tokens", "input_tokens"),
    ("input_image_tokens", "input_tokens"),
    ("input_video_tokens", "input_tokens"),
    ("cache_audio_read_tokens", "cache_read_tokens"),
    ("cache_audio_read_tokens", "input_audio_tokens"),
    ("cache_image_read_tokens", "cache_read_tokens"),
    ("cache_image_read_tokens", "input_image_tokens"),
    ("output_audio_tokens", "output_tokens"),
    ("output_image_tokens", "output_tokens"),
)


def _compile_plain_check() -> Any:
    """Generate `check(usage) -> bool`: every count an exact non-negative int and every subset rule kept.

    Straight-line code over the slots, about ten times faster than the loop in `Usage._validate`, which
    runs only when this says no (to coerce, or to raise with a precise message). The generated source
    holds only field names of `Usage` and the subset rules below.
    """
    at = {name: f"v{i}" for i, name in enumerate(TOKEN_FIELDS)}
    v = at.__getitem__
    reads = [f"    {v(name)} = u.{name}" for name in TOKEN_FIELDS]
    exact = " and ".join(f"type({v(name)}) is int" for name in TOKEN_FIELDS)
    signs = " | ".join(v(name) for name in TOKEN_FIELDS)  # negative exactly when one count is
    subsets = " or ".join(f"{v(part)} > {v(whole)}" for part, whole in _SUBSETS)
    cached = f"{v('cache_read_tokens')} + {v('cache_write_tokens')}"
    media = " + ".join(v(n) for n in ("input_audio_tokens", "input_image_tokens", "input_video_tokens"))
    cached_media = f"{v('cache_audio_read_tokens')} + {v('cache_image_read_tokens')}"
    produced = " + ".join(
        v(n)
        for n in ("reasoning_tokens", "output_audio_tokens", "output_image_tokens", "output_video_tokens")
    )
    source = "\n".join(
        [
            "def check(u):",
            *reads,
            f"    if not ({exact}) or ({signs}) < 0 or {subsets}:",
            "        return False",
            f"    return ({cached} <= {v('input_tokens')}"
            f" and {cached} + {media} - ({cached_media}) <= {v('input_tokens')}"
            f" and {produced} <= {v('output_tokens')})",
        ]
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<tokentrail usage check>", "exec"), namespace)
    return namespace["check"]


def _check_subsets(usage: Usage) -> None:
    for part, whole in _SUBSETS:
        if getattr(usage, part) > getattr(usage, whole):
            raise InvalidUsageError(
                f"{part} ({getattr(usage, part)}) cannot exceed {whole} ({getattr(usage, whole)})"
            )
    u = usage
    if u.cache_read_tokens + u.cache_write_tokens > u.input_tokens:
        raise InvalidUsageError(
            f"cache_read_tokens + cache_write_tokens ({u.cache_read_tokens + u.cache_write_tokens}) "
            f"cannot exceed input_tokens ({u.input_tokens})"
        )
    # Every input token is exactly one of: cached or not, and text or another modality.
    cached_media = u.cache_audio_read_tokens + u.cache_image_read_tokens
    media = u.input_audio_tokens + u.input_image_tokens + u.input_video_tokens
    claimed = u.cache_read_tokens + u.cache_write_tokens + media - cached_media
    if claimed > u.input_tokens:
        raise InvalidUsageError(
            f"cache and media input counts together ({claimed}) cannot exceed input_tokens ({u.input_tokens})"
        )
    produced = u.reasoning_tokens + u.output_audio_tokens + u.output_image_tokens + u.output_video_tokens
    if produced > u.output_tokens:
        raise InvalidUsageError(
            f"reasoning and media output counts together ({produced}) cannot exceed "
            f"output_tokens ({u.output_tokens})"
        )


_plainly_valid = _compile_plain_check()


@dataclass(frozen=True, slots=True)
class PriceRule:
    """Which price was applied: the catalog entry (or override), its date and the request variant."""

    provider: str
    model: str
    model_name: str | None
    source: str  # e.g. "genai-prices 0.2.3" or "override"
    price_date: date | None = None  # first day of the dated price that applied, None when undated
    variant: tuple[tuple[str, str], ...] = ()  # request context that selected a price variant
    prices: Mapping[str, object] | None = None  # per-unit prices as published (for display)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, read back by `from_dict` (exports and the SQLite ledger use it)."""
        return {
            "provider": self.provider,
            "model": self.model,
            "model_name": self.model_name,
            "source": self.source,
            "price_date": self.price_date.isoformat() if self.price_date is not None else None,
            "variant": [list(pair) for pair in self.variant],
            "prices": None if self.prices is None else dict(self.prices),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceRule:
        price_date = data.get("price_date")
        return cls(
            provider=data["provider"],
            model=data["model"],
            model_name=data.get("model_name"),
            source=data["source"],
            price_date=date.fromisoformat(price_date) if price_date else None,
            variant=tuple((str(k), str(v)) for k, v in data.get("variant") or ()),
            prices=data.get("prices"),
        )


@dataclass(frozen=True, slots=True)
class CostLayout:
    """What each amount of a priced `Cost` is: component names and directions (1 input, 2 output, 0 neither)."""

    names: tuple[str, ...]
    directions: tuple[int, ...]


_EMPTY_LAYOUT = CostLayout((), ())


class Cost:
    """What a call cost, in exact USD.

    Amounts are held as integers of 10**-24 USD and turned into `Decimal` when read.
    `components` splits the total into disjoint parts (uncached input, cache reads, cache writes,
    output, …) that add up to `total`; `input` and `output` group them by direction (per-request and
    tool fees belong to neither); `reasoning` is the share of `output` spent on reasoning tokens.
    An unpriced cost (`priced=False`) has a `reason` and no amounts: it is never a silent $0.
    """

    __slots__ = ("_layout", "_parts", "_reasoning", "priced", "reason", "rule", "total_units")

    def __init__(
        self,
        *,
        priced: bool,
        rule: PriceRule | None = None,
        reason: str | None = None,
        layout: CostLayout = _EMPTY_LAYOUT,
        parts: tuple[int, ...] = (),
        reasoning_units: int = 0,
    ) -> None:
        self.priced = priced
        self.rule = rule
        self.reason = reason
        self._layout = layout
        self._parts = parts
        self._reasoning = reasoning_units
        self.total_units = sum(parts)

    @classmethod
    def unpriced(cls, reason: str) -> Cost:
        return cls(priced=False, reason=reason)

    @property
    def total(self) -> Decimal:
        """Total cost in USD (0 when unpriced: check `priced` before trusting it)."""
        return units_to_decimal(self.total_units)

    @property
    def input_units(self) -> int:
        return sum(p for p, d in zip(self._parts, self._layout.directions, strict=True) if d == 1)

    @property
    def output_units(self) -> int:
        return sum(p for p, d in zip(self._parts, self._layout.directions, strict=True) if d == 2)

    @property
    def input(self) -> Decimal:
        """Cost of all input tokens: uncached, cache reads and writes, input media."""
        return units_to_decimal(self.input_units)

    @property
    def output(self) -> Decimal:
        """Cost of all generated tokens, reasoning included."""
        return units_to_decimal(self.output_units)

    @property
    def reasoning(self) -> Decimal:
        """The part of `output` paid for reasoning tokens."""
        return units_to_decimal(self._reasoning)

    @property
    def reasoning_units(self) -> int:
        return self._reasoning

    @property
    def components(self) -> dict[str, Decimal]:
        """Disjoint parts of the total, e.g. {"input": …, "cache_read": …, "output": …}."""
        return {name: units_to_decimal(units) for name, units in self.component_units}

    @property
    def component_units(self) -> tuple[tuple[str, int], ...]:
        return tuple(zip(self._layout.names, self._parts, strict=True))

    @property
    def provider(self) -> str | None:
        return self.rule.provider if self.rule else None

    @property
    def model(self) -> str | None:
        return self.rule.model if self.rule else None

    def __add__(self, other: object) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        if self._layout == other._layout:
            layout, parts = self._layout, tuple(a + b for a, b in zip(self._parts, other._parts, strict=True))
        else:
            merged: dict[str, tuple[int, int]] = {}
            for cost in (self, other):
                for name, direction, units in zip(
                    cost._layout.names, cost._layout.directions, cost._parts, strict=True
                ):
                    merged[name] = (direction, merged.get(name, (direction, 0))[1] + units)
            layout = CostLayout(tuple(merged), tuple(d for d, _ in merged.values()))
            parts = tuple(u for _, u in merged.values())
        return Cost(
            priced=self.priced and other.priced,
            rule=self.rule if self.rule == other.rule else None,
            reason=self.reason if self.reason is not None else other.reason,
            layout=layout,
            parts=parts,
            reasoning_units=self._reasoning + other._reasoning,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cost):
            return NotImplemented
        return (
            self.priced == other.priced
            and self.reason == other.reason
            and self.rule == other.rule
            and self.component_units == other.component_units
            and self._reasoning == other._reasoning
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not self.priced:
            return f"Cost(priced=False, reason={self.reason!r})"
        where = f", provider={self.provider!r}, model={self.model!r}" if self.rule else ""
        return f"Cost(total=Decimal('{self.total}'){where})"


def priced_cost(
    rule: PriceRule, layout: CostLayout, parts: tuple[int, ...], total: int, reasoning: int
) -> Cost:
    """A priced Cost without keyword parsing: the pricing hot path."""
    cost = _new_cost(Cost)
    cost.priced = True
    cost.rule = rule
    cost.reason = None
    cost._layout = layout
    cost._parts = parts
    cost._reasoning = reasoning
    cost.total_units = total
    return cost


_new_cost = object.__new__
