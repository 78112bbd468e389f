"""Optimization advice computed from the ledger and the price catalog.

* **Cheaper model** — rule "next tier down": for each (agent, model) the summed usage is priced
  (`Catalog.price`) on every candidate of the same provider and model family (the model id's first
  segment, e.g. "gpt", "claude", "gemini"), that is a chat model (priced for input and output) and
  whose context window is at least the current model's (when both are known). Among candidates
  cheaper than the actual recorded cost, the dearest one is proposed — the smallest step down in
  price, as a proxy for the smallest step down in capability — and the cheapest is reported beside it.
  Prices that depend on prompt size (tiers) are applied to the summed usage: an upper bound of the
  candidate's cost, so savings are never overstated.
* **Prompt caching** — prompt text is not stored, so repeated prefixes cannot be seen. What is known:
  per (agent, model) the input volume, the cached-read share and the model's cache prices. Where the
  hit rate is below `max_hit_rate` and the mean prompt is at least `min_prompt_tokens` (1,024 is the
  smallest cacheable prompt at OpenAI and for most Anthropic models, per their prompt-caching docs),
  the report gives the saving per million input tokens moved to cache reads, the ceiling (every
  uncached input token read from cache) and the reads a cached prefix needs to repay its write premium.
* **Context limits** — sessions whose largest prompt reached `threshold` of the model's context window
  (`tokens.limits.model_limits`). A summary holds sums, not maxima, so this one reads the records.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tokentrail._types import Usage
from tokentrail.analytics._source import history, summary

if TYPE_CHECKING:
    from tokentrail.pricing.catalog import Catalog
    from tokentrail.stores.base import Store
    from tokentrail.tracker import Tracker

__all__ = [
    "Advice",
    "CachingOpportunity",
    "ContextPressure",
    "ModelSwitch",
    "advise",
    "caching_opportunities",
    "cheaper_models",
    "context_pressure",
]

_NOT_CHAT = (
    r"audio|realtime|image|tts|transcribe|search|embed|moderation|whisper|dall-e|codex|vision|\.ft-|ft:"
)
_MILLION = 1_000_000
_PROBE = 1_000


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class ModelSwitch:
    """What `agent`'s usage of `model` would have cost on `candidate` (the next tier down)."""

    agent: str | None
    model: str
    provider: str | None
    calls: int
    actual_cost: Decimal
    candidate: str
    candidate_cost: Decimal
    cheapest: str
    cheapest_cost: Decimal

    @property
    def saving(self) -> Decimal:
        return self.actual_cost - self.candidate_cost

    @property
    def saving_pct(self) -> float:
        return float(self.saving * 100 / self.actual_cost) if self.actual_cost else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "model": self.model,
            "provider": self.provider,
            "calls": self.calls,
            "actual_cost_usd": str(self.actual_cost),
            "candidate": self.candidate,
            "candidate_cost_usd": str(self.candidate_cost),
            "saving_usd": str(self.saving),
            "saving_pct": self.saving_pct,
            "cheapest": self.cheapest,
            "cheapest_cost_usd": str(self.cheapest_cost),
        }


@dataclass(frozen=True, slots=True)
class CachingOpportunity:
    """Input of `agent` on `model` that prompt caching could make cheaper."""

    agent: str | None
    model: str
    provider: str | None
    calls: int
    input_tokens: int
    cache_read_tokens: int
    uncached_input_tokens: int  # input − cache reads − cache writes
    hit_rate: float
    input_price_per_mtok: Decimal
    cache_read_price_per_mtok: Decimal
    cache_write_price_per_mtok: Decimal
    saving_per_mtok: Decimal  # input price − cache read price
    max_saving: Decimal  # if every uncached input token had been a cache read
    break_even_reads: int  # reads of a cached prefix that repay writing it (0: writes cost no extra)

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "model": self.model,
            "provider": self.provider,
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "uncached_input_tokens": self.uncached_input_tokens,
            "hit_rate": self.hit_rate,
            "input_price_per_mtok_usd": str(self.input_price_per_mtok),
            "cache_read_price_per_mtok_usd": str(self.cache_read_price_per_mtok),
            "cache_write_price_per_mtok_usd": str(self.cache_write_price_per_mtok),
            "saving_per_mtok_usd": str(self.saving_per_mtok),
            "max_saving_usd": str(self.max_saving),
            "break_even_reads": self.break_even_reads,
        }


@dataclass(frozen=True, slots=True)
class ContextPressure:
    """A session whose largest prompt filled `max_utilization` of the model's window."""

    session: str | None
    model: str
    provider: str | None
    calls: int
    max_input_tokens: int
    context_window: int
    max_utilization: float
    calls_over_threshold: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "model": self.model,
            "provider": self.provider,
            "calls": self.calls,
            "max_input_tokens": self.max_input_tokens,
            "context_window": self.context_window,
            "max_utilization": self.max_utilization,
            "calls_over_threshold": self.calls_over_threshold,
        }


@dataclass(frozen=True, slots=True)
class Advice:
    switches: list[ModelSwitch] = field(default_factory=list)
    caching: list[CachingOpportunity] = field(default_factory=list)
    context: list[ContextPressure] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "switches": [s.as_dict() for s in self.switches],
            "caching": [c.as_dict() for c in self.caching],
            "context": [c.as_dict() for c in self.context],
        }


def _catalog_of(source: Tracker | Store, catalog: Catalog | None) -> Catalog:
    if catalog is not None:
        return catalog
    own = getattr(source, "catalog", None)
    if own is not None:
        return own  # type: ignore[no-any-return]
    from tokentrail.pricing.catalog import default_catalog

    return default_catalog()


def _ids(match: object) -> tuple[str | None, str]:
    provider = getattr(match, "provider_id", None)
    model = getattr(match, "model_id", None)
    return (provider if isinstance(provider, str) else None, model if isinstance(model, str) else "")


def _is_chat(catalog: Catalog, model: str, provider: str | None) -> bool:
    cost = catalog.price(Usage(input_tokens=_PROBE, output_tokens=_PROBE), model, provider)
    return cost.priced and cost.input > 0 and cost.output > 0


def candidate_models(catalog: Catalog, model: str, provider: str | None = None) -> list[tuple[str, str]]:
    """(provider, model id) of the same provider and family as `model`, chat models, with a context
    window at least `model`'s (when both are known); `model` itself excluded."""
    match = catalog.resolve(model, provider)
    if match is None:
        return []
    provider_id, model_id = _ids(match)
    if provider_id is None or not model_id:
        return []
    window = getattr(match, "context_window", None)
    stem = re.split(r"[-_.:/]", model_id.lower(), maxsplit=1)[0]
    found = []
    for candidate_provider, candidate, _ in catalog.search(stem):
        lowered = candidate.lower()
        if (
            candidate_provider != provider_id
            or candidate == model_id
            or not lowered.startswith(stem)
            or re.search(_NOT_CHAT, lowered)
        ):
            continue
        other = catalog.resolve(candidate, provider_id)
        other_window = getattr(other, "context_window", None)
        if window is not None and other_window is not None and other_window < window:
            continue
        if _is_chat(catalog, candidate, provider_id):
            found.append((provider_id, candidate))
    return found


def cheaper_models(
    source: Tracker | Store,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    *,
    catalog: Catalog | None = None,
    **filters: Any,
) -> list[ModelSwitch]:
    """Per (agent, model): the next cheaper tier of the same family and what it would have saved,
    largest saving first. Only groups whose calls were all priced are compared."""
    catalog = _catalog_of(source, catalog)
    found = []
    candidates_of: dict[tuple[str, str | None], list[tuple[str, str]]] = {}
    for row in summary(source, ("agent", "model", "provider"), since, until, filters):
        model, provider = row.group["model"], row.group["provider"]
        if not isinstance(model, str) or row.unpriced_calls or row.cost_units <= 0:
            continue
        provider = provider if isinstance(provider, str) else None
        key = (model, provider)
        if key not in candidates_of:
            candidates_of[key] = candidate_models(catalog, model, provider)
        usage = _plain(row.usage)
        cheaper = []
        for candidate_provider, candidate in candidates_of[key]:
            cost = catalog.price(usage, candidate, candidate_provider)
            if cost.priced and cost.total < row.cost:
                cheaper.append((cost.total, candidate))
        if not cheaper:
            continue
        cheaper.sort()
        agent = row.group["agent"]
        found.append(
            ModelSwitch(
                agent=agent if isinstance(agent, str) else None,
                model=model,
                provider=provider,
                calls=row.calls,
                actual_cost=row.cost,
                candidate=cheaper[-1][1],
                candidate_cost=cheaper[-1][0],
                cheapest=cheaper[0][1],
                cheapest_cost=cheaper[0][0],
            )
        )
    found.sort(key=lambda s: s.saving, reverse=True)
    return found


def _plain(usage: Usage) -> Usage:
    """A summed usage as a complete one (its status may say partial or estimated)."""
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def cache_prices(
    catalog: Catalog, model: str, provider: str | None
) -> tuple[Decimal, Decimal, Decimal] | None:
    """(input, cache read, cache write) USD per million tokens of `model`, or None when unpriced."""
    # priced on a small prompt (× 1000) so that prices tiered by prompt size stay on their first tier
    plain = catalog.price(Usage(input_tokens=_PROBE), model, provider)
    read = catalog.price(Usage(input_tokens=_PROBE, cache_read_tokens=_PROBE), model, provider)
    write = catalog.price(Usage(input_tokens=_PROBE, cache_write_tokens=_PROBE), model, provider)
    if not (plain.priced and read.priced and write.priced):
        return None
    scale = _MILLION // _PROBE
    return plain.input * scale, read.input * scale, write.input * scale


def caching_opportunities(
    source: Tracker | Store,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    *,
    catalog: Catalog | None = None,
    max_hit_rate: float = 0.5,
    min_prompt_tokens: int = 1024,
    **filters: Any,
) -> list[CachingOpportunity]:
    """Per (agent, model): input that cache reads would price lower, largest ceiling first."""
    catalog = _catalog_of(source, catalog)
    found = []
    for row in summary(source, ("agent", "model", "provider"), since, until, filters):
        model, provider = row.group["model"], row.group["provider"]
        if not isinstance(model, str) or not row.calls or not row.input_tokens:
            continue
        provider = provider if isinstance(provider, str) else None
        hit_rate = row.cache_read_tokens / row.input_tokens
        if hit_rate >= max_hit_rate or row.input_tokens / row.calls < min_prompt_tokens:
            continue
        prices = cache_prices(catalog, model, provider)
        if prices is None:
            continue
        plain, read, write = prices
        if read >= plain:
            continue  # no discount for cache reads on this model
        uncached = row.input_tokens - row.cache_read_tokens - row.cache_write_tokens
        saving = plain - read
        premium = write - plain
        agent = row.group["agent"]
        found.append(
            CachingOpportunity(
                agent=agent if isinstance(agent, str) else None,
                model=model,
                provider=provider,
                calls=row.calls,
                input_tokens=row.input_tokens,
                cache_read_tokens=row.cache_read_tokens,
                uncached_input_tokens=uncached,
                hit_rate=hit_rate,
                input_price_per_mtok=plain,
                cache_read_price_per_mtok=read,
                cache_write_price_per_mtok=write,
                saving_per_mtok=saving,
                max_saving=saving * uncached / _MILLION,
                break_even_reads=math.ceil(premium / saving) if premium > 0 else 0,
            )
        )
    found.sort(key=lambda c: c.max_saving, reverse=True)
    return found


def context_pressure(
    source: Tracker | Store,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    *,
    catalog: Catalog | None = None,
    threshold: float = 0.9,
    **filters: Any,
) -> list[ContextPressure]:
    """Sessions (by model) whose largest prompt reached `threshold` of the context window, fullest first."""
    from tokentrail.tokens.limits import model_limits

    catalog = _catalog_of(source, catalog)
    groups: dict[tuple[str | None, str, str | None], list[int]] = {}
    for record in history(source, since, until, filters):
        if record.model is None:
            continue
        groups.setdefault((record.session, record.model, record.provider), []).append(
            record.usage.input_tokens
        )
    windows: dict[tuple[str, str | None], int | None] = {}
    found = []
    for (session, model, provider), inputs in groups.items():
        if (model, provider) not in windows:
            windows[(model, provider)] = model_limits(model, provider, catalog).context_window
        window = windows[(model, provider)]
        if not window:
            continue
        largest = max(inputs)
        if largest / window < threshold:
            continue
        found.append(
            ContextPressure(
                session=session,
                model=model,
                provider=provider,
                calls=len(inputs),
                max_input_tokens=largest,
                context_window=window,
                max_utilization=largest / window,
                calls_over_threshold=sum(1 for n in inputs if n / window >= threshold),
            )
        )
    found.sort(key=lambda p: p.max_utilization, reverse=True)
    return found


def advise(
    source: Tracker | Store,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    *,
    catalog: Catalog | None = None,
    context_threshold: float = 0.9,
    **filters: Any,
) -> Advice:
    """All three kinds of advice over [since, until)."""
    return Advice(
        switches=cheaper_models(source, since, until, catalog=catalog, **filters),
        caching=caching_opportunities(source, since, until, catalog=catalog, **filters),
        context=context_pressure(
            source, since, until, catalog=catalog, threshold=context_threshold, **filters
        ),
    )
