"""Value types: `Usage` (what a call consumed), `Cost` (what it cost), `UsageStatus`, `PriceRule`.

Token semantics (one convention everywhere, the same as genai-prices):
`input_tokens` counts every prompt token, cached reads and cache writes included;
`cache_read_tokens`, `cache_write_tokens` are subsets of it and `cache_write_1h_tokens` is a subset of
`cache_write_tokens`. `output_tokens` counts every generated token and `reasoning_tokens` is a subset of it.
Modality counts (audio, image, video) are subsets of the direction they belong to, and each cached
modality count (`cache_audio_read_tokens`, …) is a subset of both `cache_read_tokens` and its modality.
`output_citation_tokens` is a subset of `output_tokens`, disjoint from reasoning and media outputs.

Units that are not tokens are counted beside them: characters, text messages, audio durations in whole
milliseconds (`input_audio_ms` and `output_audio_ms` are parts of `audio_ms`, which a reader sets
whenever either is known), document pages (annotated pages a subset of all pages), pixels and tool
calls (web, file/storage, social and rerank searches, code executions).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from decimal import Decimal
from typing import Any

from tokentrail._money import units_to_decimal
from tokentrail.errors import InvalidUsageError

__all__ = [
    "RARE_FIELDS",
    "TOKEN_FIELDS",
    "Cost",
    "CostLayout",
    "PriceRule",
    "Usage",
    "UsageStatus",
    "fill_class",
    "priced_cost",
    "usage_builder",
    "usage_fill_source",
]


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
    """What one call (or a sum of calls) consumed: token counts and every other unit a catalog prices,
    validated on construction.

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
    # Rarely non-zero units, named after genai-prices' usage keys (durations in milliseconds).
    cache_video_read_tokens: int = 0
    output_citation_tokens: int = 0
    input_characters: int = 0
    input_text_messages: int = 0
    audio_ms: int = 0
    input_audio_ms: int = 0
    output_audio_ms: int = 0
    input_document_pages: int = 0
    input_annotated_document_pages: int = 0
    input_pixels: int = 0
    storage_searches: int = 0
    code_executions: int = 0
    social_searches: int = 0
    rerank_searches: int = 0
    status: UsageStatus = UsageStatus.COMPLETE
    reason: str | None = None
    # False only when every count after `requests` is 0 (set by __init__; never compared or shown): the
    # memory store's write path tests this one slot instead of reading each rare count of every call.
    _rare_units: bool = field(default=False, init=False, repr=False, compare=False)

    # __init__ is replaced below by a generated one (same signature) that sets the slots and runs the
    # straight-line check on its arguments; `_validate` runs only when that check says no.

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
        status = max(self.status, other.status, key=_STATUS_RANK.__getitem__)
        reason = self.reason if self.reason is not None else other.reason
        added: Usage = _add_counts(self, other, status, reason)
        return added

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
    ("cache_video_read_tokens", "cache_read_tokens"),
    ("cache_video_read_tokens", "input_video_tokens"),
    ("output_audio_tokens", "output_tokens"),
    ("output_image_tokens", "output_tokens"),
    ("output_citation_tokens", "output_tokens"),
    ("input_audio_ms", "audio_ms"),
    ("output_audio_ms", "audio_ms"),
    ("input_annotated_document_pages", "input_document_pages"),
)
# Parts that together may not exceed a whole (besides the pairs above).
_CACHED = ("cache_read_tokens", "cache_write_tokens")
_MEDIA_IN = ("input_audio_tokens", "input_image_tokens", "input_video_tokens")
_CACHED_MEDIA = ("cache_audio_read_tokens", "cache_image_read_tokens", "cache_video_read_tokens")
_PRODUCED = (
    "reasoning_tokens",
    "output_audio_tokens",
    "output_image_tokens",
    "output_video_tokens",
    "output_citation_tokens",
)
_AUDIO_PARTS = ("input_audio_ms", "output_audio_ms")


def _valid_expression(zero: frozenset[str] = frozenset(), *, fast_zero: bool = False) -> str:
    """Python source, over variables named like the count fields, true when every count is an exact
    non-negative int and every subset rule is kept (the generated check and `__init__` share it).

    Counts in `zero` are known to be 0 and left out; with `fast_zero` a count that is the int 0 object
    (`_zero`, what every literal or computed 0 is in CPython) skips its type call.
    """
    names = [name for name in TOKEN_FIELDS if name not in zero]
    if fast_zero:
        exact = " and ".join(f"({name} is _zero or type({name}) is int)" for name in names)
    else:
        exact = " and ".join(f"type({name}) is int" for name in names)
    signs = " | ".join(names)  # negative exactly when one count is
    return f"{exact} and ({signs}) >= 0 and {_rules_expression(zero)}"


def _rules_expression(zero: frozenset[str], *, lean: bool = False) -> str:
    """Python source true when the subset rules hold for counts known to be exact non-negative ints
    (counts in `zero` are known to be 0 and left out). With `lean`, the same truth in fewer comparisons:
    no pair rule that a sum rule implies (`a + b <= c` holds only when `a <= c` and `b <= c`), no sum
    rule over no count."""

    def total(parts: tuple[str, ...]) -> str:
        return " + ".join(name for name in parts if name not in zero) or "0"

    media = not zero.issuperset(_MEDIA_IN)  # without media counts the media rule is the cache rule
    cached_media = total(_CACHED_MEDIA)
    # With no cached media count the media rule is a plain sum: it implies the cache rule and its pairs.
    plain_media = lean and media and cached_media == "0"
    implied: set[tuple[str, str]] = set()
    if lean:
        implied |= {(part, "input_tokens") for part in _CACHED}
        implied |= {(part, "output_tokens") for part in _PRODUCED}
        if plain_media:
            implied |= {(part, "input_tokens") for part in _MEDIA_IN}
        if "audio_ms" not in zero:
            implied |= {(part, "audio_ms") for part in _AUDIO_PARTS}
    pairs = [
        f"{part} > {whole}" for part, whole in _SUBSETS if part not in zero and (part, whole) not in implied
    ]
    rules = [] if plain_media else [f"{total(_CACHED)} <= input_tokens"]
    if media:
        less = "" if plain_media else f" - ({cached_media})"
        rules.append(f"{total(_CACHED)} + {total(_MEDIA_IN)}{less} <= input_tokens")
    rules.append(f"{total(_PRODUCED)} <= output_tokens")
    if "audio_ms" not in zero:
        rules.append(f"{total(_AUDIO_PARTS)} <= audio_ms")
    if not lean:
        return f"not ({' or '.join(pairs) or 'False'}) and " + " and ".join(rules)
    rules = [rule for rule in rules if not rule.startswith("0 <= ")]
    if pairs:
        rules.insert(0, f"not ({' or '.join(pairs)})")
    return " and ".join(rules) or "True"


# Counts that are 0 in nearly every call: `__init__` checks them only when one is not the int 0, and
# records in `_rare_units` whether one may be non-zero.
RARE_FIELDS = TOKEN_FIELDS[TOKEN_FIELDS.index("requests") + 1 :]


def _compile_usage_code() -> tuple[Any, Any, Any]:
    """Generate `check(usage) -> bool`, `Usage.__init__` and the field sum of `Usage.__add__`.

    Straight-line code over the slots is several times faster than loops: `__init__` sets each slot
    through its descriptor and checks its arguments with one expression (the loop in `Usage._validate`
    runs only when that says no, to coerce or to raise with a precise message). The generated source
    holds only the field names of `Usage`, the subset rules above and references to the namespace.
    """
    namespace: dict[str, Any] = {"_Status": UsageStatus, "_Usage": Usage, "_zero": 0}
    params = []
    sets = []
    for f in fields(Usage):
        namespace[f"_set_{f.name}"] = Usage.__dict__[f.name].__set__
        if f.init:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
            sets.append(f"    _set_{f.name}(self, {f.name})")
    plain = "type(status) is _Status and (reason is None or type(reason) is str)"
    rare_zero = " and ".join(f"{name} is _zero" for name in RARE_FIELDS)
    source = "\n".join(
        [
            "def check(u):",
            *(f"    {name} = u.{name}" for name in TOKEN_FIELDS),
            f"    return bool({_valid_expression()})",
            "",
            f"def __init__(self, {', '.join(params)}):",
            *sets,
            f"    if {rare_zero}:",
            "        _set__rare_units(self, False)",
            f"        if not ({_valid_expression(frozenset(RARE_FIELDS), fast_zero=True)} and {plain}):",
            "            self._validate()",
            "    else:",
            "        _set__rare_units(self, True)",
            f"        if not ({_valid_expression(fast_zero=True)} and {plain}):",
            "            self._validate()",
            "",
            "def add(a, b, status, reason):",
            f"    return _Usage({', '.join(f'a.{n} + b.{n}' for n in TOKEN_FIELDS)}, status, reason)",
        ]
    )
    exec(compile(source, "<tokentrail usage>", "exec"), namespace)
    init = namespace["__init__"]
    init.__qualname__ = "Usage.__init__"
    return namespace["check"], init, namespace["add"]


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
    cached_media = sum(getattr(u, name) for name in _CACHED_MEDIA)
    media = sum(getattr(u, name) for name in _MEDIA_IN)
    claimed = u.cache_read_tokens + u.cache_write_tokens + media - cached_media
    if claimed > u.input_tokens:
        raise InvalidUsageError(
            f"cache and media input counts together ({claimed}) cannot exceed input_tokens ({u.input_tokens})"
        )
    produced = sum(getattr(u, name) for name in _PRODUCED)
    if produced > u.output_tokens:
        raise InvalidUsageError(
            f"reasoning, citation and media output counts together ({produced}) cannot exceed "
            f"output_tokens ({u.output_tokens})"
        )
    directed = u.input_audio_ms + u.output_audio_ms
    if directed > u.audio_ms:
        raise InvalidUsageError(
            f"input_audio_ms + output_audio_ms ({directed}) cannot exceed audio_ms ({u.audio_ms})"
        )


_plainly_valid, _usage_init, _add_counts = _compile_usage_code()
setattr(Usage, "__init__", _usage_init)  # noqa: B010 (a method assignment mypy would refuse)


def fill_class(frozen: type) -> type:
    """A mutable twin of a frozen slotted dataclass, to build many of its objects fast: a subclass of it
    adding no slot, whose instances take plain attribute stores (no `__init__`, no frozen `__setattr__`),
    filled and then made a `frozen` by `__class__` assignment. The cheapest build CPython offers: the
    stores are specialized slot stores and, the layout being the same by inheritance, the assignment
    compares no slot names (the frozen dataclass's `__init__` sets each field by a call instead)."""
    plain = {
        "__init__": object.__init__,
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
    }
    return type(f"_{frozen.__name__}Fill", (frozen,), {"__slots__": (), **plain})


# `usage_builder`'s constructors fill one, then make it a Usage.
_UsageFill = fill_class(Usage)


def usage_builder(names: Sequence[str], *, exact_counts: bool = False) -> Callable[..., Usage]:
    """A constructor `build(*counts)` of a complete `Usage` from the counts `names` (positional, in that
    order), every other field at its default, for readers that build many (the compiled usage readers).

    It checks what `Usage(...)` checks (the same straight-line check on the given counts; when that says
    no, `Usage(...)` itself runs, to coerce an int subclass or raise the precise `InvalidUsageError`), and
    is several times faster: the slots are set by plain attribute stores on a `_UsageFill`, which then
    becomes a Usage, instead of one slot-descriptor call per field of the frozen dataclass.
    With `exact_counts` the caller vouches that every count it passes is an exact `int` >= 0 (a compiled
    reader checks each count it reads), and only the subset rules are checked.
    """
    given = _given_counts(names)
    zero = frozenset(TOKEN_FIELDS) - set(given)
    valid = _rules_expression(zero) if exact_counts else _valid_expression(zero)
    before, fill, namespace = _fill_source(given, valid)
    source = "\n".join(
        [
            f"def build({', '.join(given)}):",
            *(f"    {line}" for line in before),
            f"    if not ({valid}):",
            f"        return _Usage({', '.join(f'{name}={name}' for name in given)})",
            *(f"    {line}" for line in fill),
            "    return u",
        ]
    )
    exec(compile(source, "<tokentrail usage builder>", "exec"), namespace)
    build: Callable[..., Usage] = namespace["build"]
    return build


def usage_fill_source(names: Sequence[str]) -> tuple[list[str], str, list[str], dict[str, Any]]:
    """The source `usage_builder(names, exact_counts=True)` runs, to inline in generated code that keeps its
    counts in local variables named like the fields `names`, each an exact `int` >= 0: the lines that set
    the other fields the subset rules name to 0, the rules (an expression, true when they hold: otherwise
    `Usage(...)` would refuse these counts), the lines that build the `Usage` into `u`, and the names these
    refer to (to add to the generated code's globals)."""
    given = _given_counts(names)
    rules = _rules_expression(frozenset(TOKEN_FIELDS) - set(given), lean=True)
    before, fill, namespace = _fill_source(given, rules)
    return before, rules, fill, namespace


def _given_counts(names: Sequence[str]) -> tuple[str, ...]:
    given = tuple(names)
    unknown = [name for name in given if name not in TOKEN_FIELDS]
    if unknown or len(set(given)) != len(given):
        raise ValueError(f"usage_builder takes distinct count fields of Usage, got {list(given)}")
    return given


def _fill_source(given: tuple[str, ...], valid: str) -> tuple[list[str], list[str], dict[str, Any]]:
    """Lines setting to 0 the counts `valid` names that are not `given`, lines filling `u` from the given
    counts (every other field at its default) and making it a Usage, and the names they refer to."""
    namespace: dict[str, Any] = {"_Usage": Usage, "_Fill": _UsageFill, "_zero": 0}
    sets = ["u = _Fill()"]
    for f in fields(Usage):
        if f.name in given:
            sets.append(f"u.{f.name} = {f.name}")
        elif f.init and (f.default is None or type(f.default) is int):
            sets.append(f"u.{f.name} = {f.default!r}")  # a constant: cheaper than a global
        elif f.init:
            namespace[f"_default_{f.name}"] = f.default
            sets.append(f"u.{f.name} = _default_{f.name}")
    rare = [name for name in given if name in RARE_FIELDS]
    rare_set = f"not ({' and '.join(f'{name} is _zero' for name in rare)})" if rare else "False"
    sets.append(f"u._rare_units = {rare_set}")
    sets.append("u.__class__ = _Usage")
    referenced = set(re.findall(r"\w+", valid))  # the wholes of given parts, the totals of the rules
    before = [f"{name} = 0" for name in TOKEN_FIELDS if name not in given and name in referenced]
    return before, sets, namespace


_LAYOUT: tuple[Any, ...] | None = None


def usage_layout() -> tuple[Any, ...]:
    """What the compiled reader (`adapters._fast`) needs to build a `Usage` as `usage_fill_source`'s lines do:
    the class, its slots' member descriptors in field order, each field's default (`_rare_units` last),
    the number of count fields (`TOKEN_FIELDS`, the first fields), where the rare counts start, the slot of
    `_rare_units`, and the subset rules `Usage(...)` checks, each as (field number, ±1) terms whose sum must
    stay <= 0 (the pairs of `_SUBSETS`, then the sums of `_rules_expression` with no count left out)."""
    global _LAYOUT
    if _LAYOUT is None:
        names = [f.name for f in fields(Usage)]
        slots = tuple(Usage.__dict__[name] for name in names)
        defaults = tuple(False if f.name == "_rare_units" else f.default for f in fields(Usage))
        at = {name: i for i, name in enumerate(TOKEN_FIELDS)}
        if tuple(names[: len(TOKEN_FIELDS)]) != TOKEN_FIELDS:
            raise RuntimeError("Usage's count fields must come first")

        def rule(parts: tuple[str, ...], wholes: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
            return tuple((at[p], 1) for p in parts) + tuple((at[w], -1) for w in wholes)

        rules = [rule((part,), (whole,)) for part, whole in _SUBSETS]
        rules.append(rule(_CACHED, ("input_tokens",)))
        rules.append(rule(_CACHED + _MEDIA_IN, (*_CACHED_MEDIA, "input_tokens")))
        rules.append(rule(_PRODUCED, ("output_tokens",)))
        rules.append(rule(_AUDIO_PARTS, ("audio_ms",)))
        rare_start = at[RARE_FIELDS[0]] if RARE_FIELDS else len(TOKEN_FIELDS)
        _LAYOUT = (
            Usage,
            slots,
            defaults,
            len(TOKEN_FIELDS),
            rare_start,
            names.index("_rare_units"),
            tuple(rules),
        )
    return _LAYOUT


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
    """What each amount of a priced `Cost` is: component names and directions (1 input, 2 output, 0 neither),
    and the positions of the amounts for units that are not tokens (requests, searches, characters,
    messages, durations, pages, pixels, code executions: the catalog's unit families other than tokens)."""

    names: tuple[str, ...]
    directions: tuple[int, ...]
    non_token: tuple[int, ...] = ()


_EMPTY_LAYOUT = CostLayout((), ())


class Cost:
    """What a call cost, in exact USD.

    Amounts are held as integers of 10**-24 USD and turned into `Decimal` when read.
    `components` splits the total into disjoint parts (uncached input, cache reads, cache writes,
    output, …) that add up to `total`; `input` and `output` group them by direction (per-request and
    tool fees belong to neither); `reasoning` is the share of `output` spent on reasoning tokens;
    `non_token` is the share of `total` paid for units that are not tokens (the rest paid for tokens).
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
    def non_token_units(self) -> int:
        return sum(self._parts[i] for i in self._layout.non_token) if self._layout.non_token else 0

    @property
    def non_token(self) -> Decimal:
        """The part of `total` paid for units that are not tokens (requests, web and other searches,
        characters, messages, audio durations, pages, pixels, code executions); the rest is tokens."""
        return units_to_decimal(self.non_token_units)

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
            others: set[str] = set()
            for cost in (self, other):
                names = cost._layout.names
                others.update(names[i] for i in cost._layout.non_token)
                for name, direction, units in zip(names, cost._layout.directions, cost._parts, strict=True):
                    merged[name] = (direction, merged.get(name, (direction, 0))[1] + units)
            layout = CostLayout(
                tuple(merged),
                tuple(d for d, _ in merged.values()),
                tuple(i for i, name in enumerate(merged) if name in others),
            )
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
