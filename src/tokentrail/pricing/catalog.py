"""The catalog: compiled index + user overrides + aliases, and `price()`, the one pricing function.

Resolution order for (model, provider): an alias rewrites the name; a user price for the name wins;
otherwise the catalog entry for the first spelling that matches (see `names.candidates`), with any user
price for that catalog model laid over its catalog prices. Results are cached per (model, provider).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

from tokentrail._types import Cost, PriceRule, Usage, UsageStatus
from tokentrail.errors import InvalidUsageError, PricingError, UnknownModelError

if TYPE_CHECKING:  # the index and its helpers load with the first price lookup, not with `import tokentrail`
    from tokentrail.pricing.index import Binding, PriceIndex, PriceSet
    from tokentrail.pricing.overrides import Alias, PriceOverride

__all__ = ["Catalog", "Match", "default_catalog", "price", "set_default_catalog"]

_CACHE_LIMIT = 4096
_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_data")
_MISSING: Any = object()  # typed Any so a cache hit needs no cast() call on the hot path
_UNKNOWN = UsageStatus.UNKNOWN
_EARLIEST, _LATEST = -(2**63), 2**63


class Match:
    """A resolved name: where its prices come from (catalog binding, user override, or both)."""

    __slots__ = ("_compiled", "_registry", "binding", "override")

    def __init__(self, binding: Binding | None, override: PriceOverride | None, catalog: Catalog) -> None:
        self.binding = binding
        self.override = override
        self._registry = catalog.index.registry
        self._compiled: dict[int, PriceSet] = {}

    @property
    def provider_id(self) -> str | None:
        if self.binding is not None:
            return self.binding.provider_id
        return self.override.provider if self.override else None

    @property
    def model_id(self) -> str:
        if self.binding is not None:
            return self.binding.model_id
        assert self.override is not None
        return self.override.model

    @property
    def context_window(self) -> int | None:
        return self.binding.model.context_window if self.binding else None

    def select(self, ts_us: int | None, context: Mapping[str, str] | None) -> PriceSet:
        if self.override is None:
            assert self.binding is not None
            return self.binding.select(ts_us, context)
        base = self.binding.select(ts_us, context) if self.binding is not None else None
        key = id(base)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = self._compile_override(base)
        return found

    def _compile_override(self, base: PriceSet | None) -> PriceSet:
        from tokentrail.pricing.index import compile_prices

        assert self.override is not None
        prices: dict[str, Any] = dict(base.rule.prices or {}) if base is not None else {}
        prices.update(self.override.prices)
        rule = PriceRule(
            provider=self.provider_id or "user",
            model=self.model_id,
            model_name=base.rule.model_name if base is not None else None,
            source=f"override ({self.override.origin})",
            price_date=base.rule.price_date if base is not None else None,
            variant=base.rule.variant if base is not None else (),
            prices=prices,
        )
        return compile_prices(self._registry, prices, rule)


class Catalog:
    """Prices for every known model; thread-safe to read while overrides are being added."""

    def __init__(self, index: PriceIndex) -> None:
        self.index = index
        self._overrides: dict[tuple[str, str | None], PriceOverride] = {}
        self._aliases: dict[str, Alias] = {}
        self._resolved: dict[tuple[str | None, str | None], Binding | Match | None] = {}
        # (resolved match, context items) -> (its price set, the µs span in which that choice holds)
        self._by_context: dict[
            tuple[Binding | Match, tuple[tuple[str, str], ...]], tuple[PriceSet, int, int]
        ] = {}
        self._lock = threading.Lock()

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_snapshot(cls) -> Catalog:
        """The catalog shipped with tokentrail (a compiled genai-prices snapshot; no network)."""
        import gzip
        import json

        from tokentrail.pricing.index import PriceIndex

        with open(os.path.join(_DATA_DIR, "prices.json.gz"), "rb") as file:
            return cls(PriceIndex(json.loads(gzip.decompress(file.read()))))

    @classmethod
    def from_genai_prices(cls) -> Catalog:
        """A catalog built from the installed genai-prices package (e.g. a newer one than the snapshot)."""
        from tokentrail.pricing.genai import build_snapshot
        from tokentrail.pricing.index import PriceIndex

        return cls(PriceIndex(build_snapshot()))

    @property
    def source(self) -> str:
        """The catalog version every price rule names (e.g. "genai-prices 0.2.3")."""
        return self.index.source

    def use_index(self, index: PriceIndex) -> None:
        """Price with `index` from now on (a refreshed catalog); user prices and aliases stay."""
        with self._lock:
            self.index = index
            self._resolved = {}
            self._by_context = {}

    # -- user prices -------------------------------------------------------------------------------

    def set_price(self, model: str, provider: str | None = None, **prices: Any) -> PriceOverride:
        """Price `model` (through `provider`, or any provider) yourself; USD per million tokens.

        Keywords: input, output, cache_read, cache_write, cache_write_1h, reasoning, input_audio,
        cache_audio_read, output_audio, input_image, cache_image_read, output_image, input_video,
        cache_video_read, output_video, citation, input_characters (per million); web_searches,
        storage_searches, code_executions, social_searches, rerank_searches, input_text_messages,
        input_document_pages, input_annotated_document_pages (per thousand); audio_hours,
        input_audio_hours, output_audio_hours (per hour); input_pixels (per billion); request (per
        request). Kinds left out fall back to the catalog's price for a known model, else to their
        parent (a cache read costs as input).
        """
        from tokentrail.pricing.overrides import PriceOverride

        override = PriceOverride.build(model, provider, "code", **prices)
        self.add_overrides([override])
        return override

    def add_overrides(self, overrides: list[PriceOverride]) -> None:
        with self._lock:
            for override in overrides:
                self._overrides[override.key] = override
            self._resolved = {}
            self._by_context = {}

    def alias(self, name: str, model: str, provider: str | None = None) -> None:
        """Make `name` (an Azure deployment, an internal nickname) stand for a catalog model."""
        from tokentrail.pricing.overrides import Alias

        self.add_aliases([Alias(name, model, provider)])

    def add_aliases(self, aliases: list[Alias]) -> None:
        from tokentrail.pricing.names import slug

        with self._lock:
            for alias in aliases:
                self._aliases[slug(alias.name)] = alias
            self._resolved = {}
            self._by_context = {}

    def load(self, path: str | os.PathLike[str]) -> None:
        """Add the prices and aliases of a TOML or JSON file (see `overrides.parse_file`)."""
        from tokentrail.pricing.overrides import parse_file

        overrides, aliases = parse_file(path)
        self.add_overrides(overrides)
        self.add_aliases(aliases)

    def overrides(self) -> list[PriceOverride]:
        return list(self._overrides.values())

    def clear_overrides(self) -> None:
        with self._lock:
            self._overrides = {}
            self._aliases = {}
            self._resolved = {}
            self._by_context = {}

    # -- lookup --------------------------------------------------------------------------------------

    def resolve(self, model: str, provider: str | None = None) -> Binding | Match | None:
        """What `model` (through `provider`) is priced as, or None when nothing is known."""
        key = (model, provider)
        cached = self._resolved.get(key, _MISSING)
        if cached is not _MISSING:
            return cast("Binding | Match | None", cached)
        found = self._resolve(model, provider)
        resolved = self._resolved
        if len(resolved) >= _CACHE_LIMIT:
            resolved.clear()
        resolved[key] = found
        return found

    def _resolve(self, model: str, provider: str | None) -> Binding | Match | None:
        from tokentrail.pricing.names import candidates, slug

        alias = self._aliases.get(slug(model))
        if alias is not None:
            model, provider = alias.model, alias.provider or provider
        override = self._override_for(model, provider)
        for name, hint in candidates(model, provider, self._is_provider):
            binding = self.index.find(name, hint)
            if binding is not None:
                override = override or self._override_for(binding.model.id, binding.provider.id)
                return binding if override is None else Match(binding, override, self)
            if override is None:
                override = self._override_for(name, hint)
        return Match(None, override, self) if override is not None else None

    def _override_for(self, model: str, provider: str | None) -> PriceOverride | None:
        from tokentrail.pricing.names import slug

        if not self._overrides:
            return None
        name = slug(model)
        if provider is not None:
            found = self._overrides.get((name, provider.lower()))
            if found is not None:
                return found
        return self._overrides.get((name, None))

    def _is_provider(self, name: str) -> bool:
        return self.index.provider(name) is not None

    def close_matches(self, model: str, limit: int = 5) -> list[str]:
        """Catalog names close to `model`, best first (see `names.rank_close`)."""
        from tokentrail.pricing.names import rank_close

        names = self.index.model_names() + [o.model for o in self._overrides.values()]
        return rank_close(model.lower().rsplit("/", 1)[-1], names, limit)

    def search(self, text: str) -> Iterator[tuple[str, str, str | None]]:
        """(provider, model id, model name) of every catalog model whose id or name contains `text`."""
        needle = text.lower()
        for provider in self.index.providers:
            for entry in provider.models:
                if needle in entry.id.lower() or needle in (entry.name or "").lower():
                    yield provider.id, entry.id, entry.name

    # -- pricing ------------------------------------------------------------------------------------

    def price(
        self,
        usage: Usage,
        model: str | None,
        provider: str | None = None,
        at: datetime | date | None = None,
        context: Mapping[str, str] | None = None,
        *,
        strict: bool = False,
    ) -> Cost:
        """Exact cost of `usage` on `model`; see `tokentrail.price`."""
        if type(usage) is not Usage and not isinstance(usage, Usage):
            raise InvalidUsageError(f"usage must be a tokentrail.Usage, got {type(usage).__name__}")
        if usage.status is _UNKNOWN:
            return Cost.unpriced(f"usage unknown: {usage.reason or 'no reason given'}")
        match = self._resolved.get((model, provider), _MISSING)
        if match is _MISSING:
            _check_names(model, provider)
            match = self.resolve(model, provider) if model else None
        if match is None:
            return self._unknown(model or "(none)", provider, strict)
        found: Binding | Match = match
        if at is None and context is None:
            return found.select(None, None).cost(usage)
        if context is not None and not isinstance(context, Mapping):
            raise PricingError(f"context must be a mapping of str to str, got {type(context).__name__}")
        if at is None and context is not None:
            return self._select_now(found, context).cost(usage)
        return found.select(_timestamp(at), context).cost(usage)

    def _select_now(self, found: Binding | Match, context: Mapping[str, str]) -> PriceSet:
        """`found.select(now, context)`, remembered per context for as long as no dated price or variant
        of the model starts: e.g. {"service_tier": "default"} on every instrumented OpenAI call."""
        now_us = time.time_ns() // 1000
        try:
            key = (found, tuple(context.items()))
            remembered = self._by_context.get(key)
        except TypeError:  # unhashable context values: nothing to remember them by
            return found.select(now_us, context)
        if remembered is not None and remembered[1] <= now_us < remembered[2]:
            return remembered[0]
        selected = found.select(now_us, context)
        window = _unchanging_window(found, now_us)
        if window is not None:
            by_context = self._by_context
            if len(by_context) >= _CACHE_LIMIT:
                by_context.clear()
            by_context[key] = (selected, *window)
        return selected

    def _unknown(self, model: str, provider: str | None, strict: bool) -> Cost:
        through = f" from provider {provider!r}" if provider else ""
        message = f"no price known for model {model!r}{through}"
        if strict:
            close = self.close_matches(model)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise UnknownModelError(message + hint, model=model, provider=provider, close_matches=close)
        return Cost.unpriced(message)


def _unchanging_window(found: Binding | Match, now_us: int) -> tuple[int, int] | None:
    """The span [start, end) of µs around `now_us` in which `found`'s price choice stays the same (no dated
    price or variant starts inside it); None when a price depends on the time of day."""
    binding = found.binding if isinstance(found, Match) else found
    start, end = _EARLIEST, _LATEST
    if binding is None:
        return start, end
    model = binding.model
    for constraint in [c for c, _ in model.prices] + [c for _, c, _ in model.variants]:
        if constraint is None:
            continue
        if constraint.start_date is None:
            return None
        if constraint.start_us <= now_us:
            start = max(start, constraint.start_us)
        else:
            end = min(end, constraint.start_us)
    return start, end


def _check_names(model: object, provider: object) -> None:
    if model is not None and not isinstance(model, str):
        raise PricingError(f"model must be a str, got {type(model).__name__}")
    if provider is not None and not isinstance(provider, str):
        raise PricingError(f"provider must be a str or None, got {type(provider).__name__}")


def _timestamp(at: object) -> int:
    from tokentrail.pricing.index import timestamp_us

    if not isinstance(at, (datetime, date)):
        raise PricingError(f"at must be a datetime or date, got {type(at).__name__}")
    return timestamp_us(at)


# -- the process default catalog ---------------------------------------------------------------------

_default: Catalog | None = None
_default_lock = threading.Lock()


def default_catalog() -> Catalog:
    """The process-wide catalog: the newest valid of the shipped snapshot and the catalog installed by
    `tokentrail prices update` (no network), plus user prices from the environment; starts the opt-in
    background refresh when `TOKENTRAIL_PRICES_REFRESH` is set."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                from tokentrail.pricing.index import PriceIndex
                from tokentrail.pricing.installed import put_in_force, select_snapshot

                snapshot = select_snapshot()[0]
                catalog = Catalog(PriceIndex(snapshot))
                put_in_force(snapshot)  # the usage readers read with its extractors too
                path = os.environ.get("TOKENTRAIL_PRICES_FILE")
                if path:
                    catalog.load(path)
                from tokentrail.pricing.overrides import parse_env

                catalog.add_overrides(parse_env(os.environ))
                _default = catalog
                if os.environ.get("TOKENTRAIL_PRICES_REFRESH"):
                    from tokentrail.pricing.refresh import start_from_env

                    start_from_env(catalog, os.environ["TOKENTRAIL_PRICES_REFRESH"])
    return _default


def set_default_catalog(catalog: Catalog | None) -> None:
    """Replace the process-wide catalog (None: choose and build it again on next use, and the usage
    readers' extractors with it)."""
    global _default
    _default = catalog
    if catalog is None:
        from tokentrail.pricing.installed import put_in_force

        put_in_force(None)


def default_if_built() -> Catalog | None:
    """The process-wide catalog when it has been built (never builds it)."""
    return _default


def price(
    usage: Usage,
    model: str | None,
    provider: str | None = None,
    at: datetime | date | None = None,
    context: Mapping[str, str] | None = None,
    *,
    strict: bool = False,
) -> Cost:
    """Exact USD cost of `usage` on `model`, as genai-prices computes it.

    `provider` narrows the lookup (e.g. "azure", "bedrock"); `at` picks dated prices (default: now);
    `context` selects request variants such as {"service_tier": "flex"} or {"processing": "batch"}.
    An unknown model gives `Cost(priced=False, reason=…)`, or `UnknownModelError` when `strict`.
    """
    catalog = _default if _default is not None else default_catalog()
    return catalog.price(usage, model, provider, at, context, strict=strict)
