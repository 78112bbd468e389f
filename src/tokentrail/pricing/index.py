"""The compiled price index: catalog data turned into matchers and integer rates.

Lookup (which provider and model a name refers to) and arithmetic follow genai-prices' rules exactly,
so a cost computed here equals genai-prices' `calc_price` to the last digit; only the representation
differs (integer yocto-dollars instead of Decimal arithmetic). Price sets are compiled lazily, the first
time a model is priced, and cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from fractions import Fraction
from math import lcm
from typing import Any

from tokentrail._money import UNITS_PER_USD
from tokentrail._types import Cost, CostLayout, PriceRule, Usage, priced_cost
from tokentrail.pricing.names import PROVIDER_ALIASES

__all__ = ["Binding", "PriceIndex", "PriceSet", "compile_prices"]

Matcher = Callable[[str], bool]
Context = Mapping[str, str]

# genai-prices usage keys that a tokentrail Usage carries, and the attribute holding each.
USAGE_ATTRS: dict[str, str] = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_tokens",
    "cache_write_1h_tokens": "cache_write_1h_tokens",
    "output_reasoning_tokens": "reasoning_tokens",
    "input_audio_tokens": "input_audio_tokens",
    "cache_audio_read_tokens": "cache_audio_read_tokens",
    "output_audio_tokens": "output_audio_tokens",
    "input_image_tokens": "input_image_tokens",
    "cache_image_read_tokens": "cache_image_read_tokens",
    "output_image_tokens": "output_image_tokens",
    "input_video_tokens": "input_video_tokens",
    "output_video_tokens": "output_video_tokens",
    "web_searches": "web_searches",
    "cache_video_read_tokens": "cache_video_read_tokens",
    "output_citation_tokens": "output_citation_tokens",
    "input_characters": "input_characters",
    "input_text_messages": "input_text_messages",
    "audio_seconds": "audio_ms",
    "input_audio_seconds": "input_audio_ms",
    "output_audio_seconds": "output_audio_ms",
    "input_document_pages": "input_document_pages",
    "input_annotated_document_pages": "input_annotated_document_pages",
    "input_pixels": "input_pixels",
    "storage_searches": "storage_searches",
    "code_executions": "code_executions",
    "social_searches": "social_searches",
    "rerank_searches": "rerank_searches",
}
# Usage attributes counted in a finer unit than their genai-prices key: how many make one key unit.
USAGE_SCALE: dict[str, int] = {"audio_ms": 1000, "input_audio_ms": 1000, "output_audio_ms": 1000}
# genai-prices bills these Groq transcription models at least 10 seconds a call (`ModelInfo.calc_price`).
_MINIMUM_AUDIO_MS = {("groq", "whisper-large-v3"): 10_000, ("groq", "whisper-large-v3-turbo"): 10_000}

_COMPACT_DATE = re.compile(r"(-)(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")
_DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def compile_clause(raw: Mapping[str, Any]) -> Matcher:
    """A predicate on lowercased model names from a genai-prices match clause."""
    ((kind, value),) = raw.items()
    if kind == "or":
        parts = [compile_clause(c) for c in value]
        return lambda text: any(p(text) for p in parts)
    if kind == "and":
        parts = [compile_clause(c) for c in value]
        return lambda text: all(p(text) for p in parts)
    if kind == "regex":
        search = re.compile(value).search
        return lambda text: search(text) is not None
    needle = str(value).lower()
    if kind == "starts_with":
        return lambda text: text.startswith(needle)
    if kind == "ends_with":
        return lambda text: text.endswith(needle)
    if kind == "contains":
        return lambda text: needle in text
    if kind == "equals":
        return lambda text: text == needle
    raise ValueError(f"unknown match clause {kind!r}")


def timestamp_us(at: datetime | date) -> int:
    """Microseconds since the epoch, UTC; naive datetimes and plain dates are read as UTC."""
    if not isinstance(at, datetime):
        at = datetime(at.year, at.month, at.day)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return (at - _EPOCH) // _ONE_US


_ONE_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc) - _EPOCH


@dataclass(frozen=True, slots=True)
class _Constraint:
    """When a dated or time-of-day price applies (genai-prices' semantics: UTC, end exclusive)."""

    start_date: date | None = None
    start_us: int = 0  # epoch µs of start_date, or µs of day of the window's start
    end_us: int = 0  # µs of day of the window's end

    @classmethod
    def parse(cls, raw: Mapping[str, str] | None) -> _Constraint | None:
        if raw is None:
            return None
        if "start_date" in raw:
            day = date.fromisoformat(raw["start_date"])
            return cls(start_date=day, start_us=timestamp_us(day))
        return cls(start_us=_time_of_day_us(raw["start_time"]), end_us=_time_of_day_us(raw["end_time"]))

    def active(self, ts_us: int) -> bool:
        if self.start_date is not None:
            return ts_us >= self.start_us
        of_day = ts_us % _DAY_US
        if self.end_us < self.start_us:
            return of_day >= self.start_us or of_day < self.end_us
        return self.start_us <= of_day < self.end_us


def _time_of_day_us(text: str) -> int:
    t = time.fromisoformat(text)
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


@dataclass(frozen=True, slots=True)
class Unit:
    usage_key: str
    price_key: str
    per: int
    dimensions: frozenset[tuple[str, str]]

    @property
    def direction(self) -> str | None:
        return dict(self.dimensions).get("direction")

    @property
    def tokens(self) -> bool:
        """Whether the unit counts tokens (its family); requests, searches, durations, … do not."""
        return dict(self.dimensions).get("family", "tokens") == "tokens"


class UnitRegistry:
    """genai-prices' unit registry: which usage key each price key prices, and how units nest."""

    def __init__(self, raw_units: Sequence[Mapping[str, Any]]) -> None:
        self.units = {
            raw["usage_key"]: Unit(
                raw["usage_key"], raw["price_key"], int(raw["per"]), frozenset(raw["dimensions"].items())
            )
            for raw in raw_units
        }
        self.by_price_key = {u.price_key: u for u in self.units.values()}
        self.by_dimensions = {u.dimensions: u for u in self.units.values()}

    def check_coverage(self, priced: Sequence[Unit]) -> str | None:
        """genai-prices' consistency rules for a set of priced units; a message when broken."""
        keys = {u.usage_key for u in priced}
        for unit in sorted(priced, key=lambda u: u.usage_key):
            missing = sorted(
                a.usage_key
                for a in self.units.values()
                if a is not unit and a.dimensions <= unit.dimensions and a.usage_key not in keys
            )
            if missing:
                return f"missing ancestor price for {unit.usage_key}: {', '.join(missing)}"
        ordered = sorted(priced, key=lambda u: u.usage_key)
        for i, first in enumerate(ordered):
            for second in ordered[i + 1 :]:
                if not _compatible(first, second):
                    continue
                join = self.by_dimensions.get(first.dimensions | second.dimensions)
                if join is None or join.usage_key not in keys:
                    return f"missing join price for {first.usage_key} and {second.usage_key}"
        return None


def _compatible(a: Unit, b: Unit) -> bool:
    b_dims = dict(b.dimensions)
    return all(b_dims.get(k, v) == v for k, v in a.dimensions)


# ---------------------------------------------------------------------------------------------------
# Price sets: one resolved set of prices, compiled into integer rates and leaf formulas.


@dataclass(frozen=True, slots=True)
class _Term:
    name: str  # component name, e.g. "input", "cache_read"
    direction: int  # 1 input, 2 output, 0 neither
    plus: tuple[int, ...]  # indexes into the usage values whose sum is added
    minus: tuple[int, ...]  # indexes whose sum is subtracted
    rate: int  # yocto-dollars per `den` units at the base price
    tiers: tuple[tuple[int, int], ...]  # (start, rate), highest start first; applies when input > start
    den: int = 1  # > 1 only when a rate is not a whole number of yocto-dollars per unit (durations)
    tokens: bool = True  # False for a unit of another family (requests, searches, durations, pages, …)


class PriceSet:
    """Prices for one model under one set of conditions, ready to apply to a `Usage`.

    The arithmetic is compiled once into a small straight-line function (a "kernel") over the usage
    fields this price set reads: leaf counts times integer rates, tier rates picked by prompt size.
    """

    __slots__ = ("_kernel", "_layout", "_terms", "error", "rule")

    def __init__(
        self,
        rule: PriceRule,
        terms: Sequence[_Term],
        attrs: Sequence[str],
        error: str | None = None,
        *,
        minimum_audio_ms: int = 0,
    ) -> None:
        self.rule = rule
        self.error = error
        self._terms = tuple(terms)
        self._layout = CostLayout(
            tuple(t.name for t in terms),
            tuple(t.direction for t in terms),
            tuple(i for i, t in enumerate(terms) if not t.tokens),
        )
        self._kernel = _compile_kernel(terms, attrs, minimum_audio_ms)

    @property
    def rates(self) -> dict[str, int]:
        """Base rate of each component, yocto-dollars per unit (rounded down; for display and estimates)."""
        return {t.name: t.rate // t.den for t in self._terms}

    def cost(self, usage: Usage) -> Cost:
        if self.error is not None:
            return Cost.unpriced(self.error)
        total, parts, reasoning = self._kernel(usage)
        return priced_cost(self.rule, self._layout, parts, total, reasoning)


def _compile_kernel(
    terms: Sequence[_Term], attrs: Sequence[str], minimum_audio_ms: int = 0
) -> Callable[[Usage], tuple[int, tuple[int, ...], int]]:
    """Generate `kernel(usage) -> (total, parts, reasoning share)` for these terms.

    Straight-line code is several times faster than interpreting the terms in a loop, and the
    generated source only ever contains attribute names from `USAGE_ATTRS` and integer literals.
    Terms whose rate is a fraction of a yocto-dollar per unit (an hourly price per millisecond) are
    summed exactly and their sum rounded once to the nearest yocto-dollar, half to even (see `_apportion`).
    """
    lines = ["def kernel(u):"]
    if minimum_audio_ms and {"audio_ms", "input_audio_ms"} & set(attrs):
        # genai-prices: the reported duration (total, else input) billed as both, at least the minimum.
        lines.append("    billed_ms = u.audio_ms or u.input_audio_ms")
        lines.append(f"    if 0 < billed_ms < {minimum_audio_ms}:\n        billed_ms = {minimum_audio_ms}")
        lines += [
            f"    v{i} = billed_ms" if attr in ("audio_ms", "input_audio_ms") else f"    v{i} = u.{attr}"
            for i, attr in enumerate(attrs)
        ]
    else:
        lines += [f"    v{i} = u.{attr}" for i, attr in enumerate(attrs)]
    if any(t.tiers for t in terms):
        lines.append("    prompt = u.input_tokens")
    has_reasoning_term = any(t.name == "reasoning" for t in terms)
    reasoning = "0"
    fractional = [j for j, t in enumerate(terms) if t.den != 1]
    den = lcm(*(terms[j].den for j in fractional))
    for j, term in enumerate(terms):
        count = " + ".join(f"v{i}" for i in term.plus) + "".join(f" - v{i}" for i in term.minus)
        if term.tiers:
            keyword = "if"
            for start, rate in term.tiers:
                lines.append(f"    {keyword} prompt > {start}:\n        r{j} = {rate}")
                keyword = "elif"
            lines.append(f"    else:\n        r{j} = {term.rate}")
            rate_expr = f"r{j}"
        else:
            rate_expr = str(term.rate)
        if term.den == 1:
            lines.append(f"    p{j} = {rate_expr} * ({count})")
        else:
            lines.append(f"    n{j} = {rate_expr} * ({count}) * {den // term.den}")
        if term.name == "reasoning":
            reasoning = f"p{j}"
        elif term.name == "output" and not has_reasoning_term:
            reasoning = f"{rate_expr} * u.reasoning_tokens"
    if fractional:
        shares = "".join(f"p{j}, " for j in fractional)
        lines.append(f"    {shares}= _apportion(({''.join(f'n{j}, ' for j in fractional)}), {den})")
    parts = "".join(f"p{j}, " for j in range(len(terms)))
    total = " + ".join(f"p{j}" for j in range(len(terms))) or "0"
    lines.append(f"    return {total}, ({parts}), {reasoning}")
    namespace: dict[str, Any] = {"_apportion": _apportion}
    exec("\n".join(lines), namespace)
    kernel: Callable[[Usage], tuple[int, tuple[int, ...], int]] = namespace["kernel"]
    return kernel


def _apportion(numerators: tuple[int, ...], den: int) -> tuple[int, ...]:
    """Whole shares of the amounts `numerator / den` that add up to their sum rounded half to even.

    Each share is its amount rounded down or up (the largest remainders, first term first on ties, get
    the units the rounded sum holds beyond the rounded-down shares), so the parts of a cost still add up
    to its total and the total is the exact one rounded once, as genai-prices' 28-digit sum would be.
    """
    quotient, remainder = divmod(sum(numerators), den)
    twice = 2 * remainder
    total = quotient + 1 if twice > den or (twice == den and quotient % 2) else quotient
    shares = [n // den for n in numerators]
    extra = total - sum(shares)
    if extra:
        by_remainder = sorted(range(len(shares)), key=lambda i: -(numerators[i] % den))
        for i in by_remainder[:extra]:
            shares[i] += 1
    return tuple(shares)


def _component_name(usage_key: str) -> str:
    if usage_key == "output_reasoning_tokens":
        return "reasoning"
    return usage_key.removesuffix("_tokens")


def compile_prices(registry: UnitRegistry, prices: Mapping[str, Any], rule: PriceRule) -> PriceSet:
    """Compile a genai-prices price mapping ({price_key: "1.25" | tiered}) into a `PriceSet`."""
    priced = [u for u in registry.units.values() if u.price_key in prices]  # registry order: input first
    problem = registry.check_coverage(priced)
    if problem is not None:
        return PriceSet(rule, (), (), error=f"catalog price for {rule.model} is inconsistent: {problem}")
    # Leaf formulas, most specific unit first (genai-prices' order): each unit's own count minus the
    # leaves of every priced unit nested inside it, so every token is priced exactly once.
    leaves: dict[str, dict[str, int]] = {}
    nested = [u for u in priced if u.usage_key != "requests"]
    for unit in sorted(nested, key=lambda u: (-len(u.dimensions), u.usage_key)):
        vector = {unit.usage_key: 1}
        for other in nested:
            if other is not unit and unit.dimensions <= other.dimensions:
                for key, coef in leaves[other.usage_key].items():
                    vector[key] = vector.get(key, 0) - coef
        leaves[unit.usage_key] = vector
    attrs: list[str] = []
    terms: list[_Term] = []
    for unit in priced:
        if unit.usage_key == "requests":
            vector = {"requests": 1}
            carried = {"requests": "requests"}
        else:
            vector = {k: c for k, c in leaves[unit.usage_key].items() if k in USAGE_ATTRS and c}
            carried = USAGE_ATTRS
        if not vector:
            continue  # a nested unit a Usage does not carry (e.g. input_text_tokens); tests keep it unpriced
        plus: list[int] = []
        minus: list[int] = []
        for key, coef in vector.items():
            attr = carried[key]
            if attr not in attrs:
                attrs.append(attr)
            (plus if coef > 0 else minus).extend([attrs.index(attr)] * abs(coef))
        scale = USAGE_SCALE.get(carried.get(unit.usage_key, ""), 0)
        rate, tiers, den = _rates(prices[unit.price_key], unit.per * (scale or 1))
        if den != 1 and not scale:  # only an hourly price per millisecond may fall between two units
            return PriceSet(
                rule,
                (),
                (),
                error=f"catalog price for {rule.model} cannot be held exactly: {unit.price_key} price "
                f"{prices[unit.price_key]} has more decimal places than tokentrail can hold exactly",
            )
        direction = {"input": 1, "output": 2}.get(unit.direction or "", 0)
        name = _component_name(unit.usage_key)
        terms.append(_Term(name, direction, tuple(plus), tuple(minus), rate, tiers, den, unit.tokens))
    minimum_audio_ms = _MINIMUM_AUDIO_MS.get((rule.provider, rule.model), 0)
    return PriceSet(rule, terms, attrs, minimum_audio_ms=minimum_audio_ms)


def _rates(raw: Any, per: int) -> tuple[int, tuple[tuple[int, int], ...], int]:
    """(base rate, ((tier start, rate), …) highest start first, den): rates in yocto-dollars per `den`
    units of a price given in USD per `per` units; den is 1 unless a rate has a fraction of a unit."""
    if isinstance(raw, Mapping):
        base = _per_unit(raw["base"], per)
        starts_rates = sorted(
            ((int(t["start"]), _per_unit(t["price"], per)) for t in raw["tiers"]), key=lambda sr: sr[0]
        )
    else:
        base, starts_rates = _per_unit(raw, per), []
    den = lcm(base.denominator, *(r.denominator for _, r in starts_rates))
    return (
        int(base * den),
        tuple((start, int(r * den)) for start, r in reversed(starts_rates)),
        den,
    )


def _per_unit(price: Any, per: int) -> Fraction:
    rate: Fraction = Fraction(Decimal(str(price))) * UNITS_PER_USD / per
    return rate


# ---------------------------------------------------------------------------------------------------
# Models and providers.


class ModelEntry:
    """One catalog model: its matcher, dated prices and request variants (compiled on first use)."""

    __slots__ = ("context_window", "deprecated", "id", "match", "name", "owner", "prices", "variants")

    def __init__(self, raw: Mapping[str, Any], owner: str) -> None:
        self.id: str = raw["id"]
        self.name: str | None = raw.get("name")
        self.owner = owner
        self.match = compile_clause(raw["match"])
        self.context_window: int | None = raw.get("context_window")
        self.deprecated = bool(raw.get("deprecated"))
        self.prices = [(_Constraint.parse(p["constraint"]), p["prices"]) for p in raw["prices"]]
        self.variants = [
            (dict(v["when"]), _Constraint.parse(v.get("constraint")), v["prices"])
            for v in raw.get("variants", ())
        ]


class ProviderEntry:
    __slots__ = ("fallbacks", "id", "model_match", "models", "name", "provider_match")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.id: str = raw["id"]
        self.name: str = raw["name"]
        self.model_match = compile_clause(raw["model_match"]) if raw.get("model_match") else None
        self.provider_match = compile_clause(raw["provider_match"]) if raw.get("provider_match") else None
        self.fallbacks: list[str] = list(raw.get("fallback_model_providers") or ())
        self.models = [ModelEntry(m, self.id) for m in raw["models"]]


class Binding:
    """A model as priced through one provider (a fallback model keeps the provider it was asked for)."""

    __slots__ = ("_compiled", "_registry", "_source", "_static", "model", "provider")

    def __init__(
        self, provider: ProviderEntry, model: ModelEntry, registry: UnitRegistry, source: str
    ) -> None:
        self.provider = provider
        self.model = model
        self._registry = registry
        self._source = source
        self._compiled: dict[tuple[int, tuple[int, ...]], PriceSet] = {}
        only_price = len(model.prices) == 1 and model.prices[0][0] is None
        self._static = self._compile(0, ()) if only_price else None

    @property
    def provider_id(self) -> str:
        return self.provider.id

    @property
    def model_id(self) -> str:
        return self.model.id

    @property
    def context_window(self) -> int | None:
        return self.model.context_window

    @property
    def owns_model(self) -> bool:
        return self.model.owner == self.provider.id

    def select(self, ts_us: int | None, context: Context | None) -> PriceSet:
        """The price set in force at `ts_us` (µs since epoch, None for now) for request `context`."""
        use_variants = bool(context) and bool(self.model.variants) and self.owns_model
        if self._static is not None and not use_variants:
            return self._static
        if ts_us is None:
            ts_us = _now_us()
        index = 0
        for i in range(len(self.model.prices) - 1, -1, -1):
            constraint = self.model.prices[i][0]
            if constraint is None or constraint.active(ts_us):
                index = i
                break
        matched: tuple[int, ...] = ()
        if use_variants:
            assert context is not None
            matched = tuple(
                i
                for i, (when, constraint, _) in enumerate(self.model.variants)
                if (constraint is None or constraint.active(ts_us))
                and all(context.get(k) == v for k, v in when.items())
            )
        key = (index, matched)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = self._compile(index, matched)
        return found

    def _compile(self, index: int, matched: tuple[int, ...]) -> PriceSet:
        constraint, standard = self.model.prices[index]
        prices = dict(standard)
        chosen: dict[str, Any] = {}
        variant: dict[str, str] = {}
        for i in matched:
            when, _, overrides = self.model.variants[i]
            for key, value in overrides.items():
                chosen.setdefault(key, value)
            variant.update(when)
        prices.update(chosen)
        rule = PriceRule(
            provider=self.provider.id,
            model=self.model.id,
            model_name=self.model.name,
            source=self._source,
            price_date=constraint.start_date if constraint else None,
            variant=tuple(sorted(variant.items())),
            prices=prices,
        )
        return compile_prices(self._registry, prices, rule)


def _now_us() -> int:
    import time as _time

    return _time.time_ns() // 1000


class PriceIndex:
    """All providers and models of a catalog snapshot, looked up the way genai-prices does."""

    def __init__(self, snapshot: Mapping[str, Any]) -> None:
        self.source = f"{snapshot.get('source', 'catalog')} {snapshot.get('version', '')}".strip()
        self.registry = UnitRegistry(snapshot["units"])
        self.providers = [ProviderEntry(p) for p in snapshot["providers"]]
        self._by_id = {p.id: p for p in self.providers}

    def provider(self, provider_id: str) -> ProviderEntry | None:
        """A provider by id or by its provider-match rule (e.g. "bedrock" → aws, "vertex_ai" → google), as
        genai-prices finds it; else by tokentrail's `names.PROVIDER_ALIASES` ("grok" → x-ai)."""
        wanted = provider_id.lower().strip()
        if wanted in self._by_id:
            return self._by_id[wanted]
        found = next((p for p in self.providers if p.provider_match and p.provider_match(wanted)), None)
        if found is None and wanted in PROVIDER_ALIASES:
            return self._by_id.get(PROVIDER_ALIASES[wanted])
        return found

    def find(self, model_ref: str, provider_id: str | None = None) -> Binding | None:
        """The catalog model `model_ref` names (through `provider_id` when given), or None."""
        ref = model_ref.lower()
        if provider_id and provider_id.lower() == "litellm" and "/" in ref:
            prefix, rest = ref.split("/", 1)
            if prefix and self.provider(prefix):
                provider_id, ref = prefix, rest
        provider = self._find_provider(ref, provider_id)
        if provider is None:
            return None
        model = self._match(provider, ref, fallback=True)
        if model is None:
            normalized = _normalize_compact_date(ref)
            if normalized != ref:
                model = self._match(provider, normalized, fallback=True)
        if model is None:
            return None
        return Binding(provider, model, self.registry, self.source)

    def _find_provider(self, ref: str, provider_id: str | None) -> ProviderEntry | None:
        if provider_id is not None:
            found = self.provider(provider_id)
            if found is not None or provider_id.lower() != "litellm":
                return found
        return next((p for p in self.providers if p.model_match and p.model_match(ref)), None)

    def _match(self, provider: ProviderEntry, ref: str, *, fallback: bool) -> ModelEntry | None:
        for model in provider.models:
            if model.match(ref):
                return model
        if fallback:
            for fallback_id in provider.fallbacks:
                other = self._by_id.get(fallback_id)
                found = self._match(other, ref, fallback=False) if other is not None else None
                if found is not None:
                    return found
        return None

    def model_names(self) -> list[str]:
        """Every model id and display name, for suggestions."""
        names: dict[str, None] = {}
        for provider in self.providers:
            for model in provider.models:
                names[model.id] = None
        return list(names)


def _normalize_compact_date(ref: str) -> str:
    def replace(match: re.Match[str]) -> str:
        year, month, day = (int(match.group(i)) for i in range(2, 5))
        try:
            date(year, month, day)
        except ValueError:
            return match.group(0)
        return f"-{year:04d}-{month:02d}-{day:02d}"

    return _COMPACT_DATE.sub(replace, ref)
