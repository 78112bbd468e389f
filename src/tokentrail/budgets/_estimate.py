"""A call's worst case before it runs: the prompt in and the output cap (or the model's output limit)
out, priced with the catalog; pricing never raises into the call it guards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING

from tokentrail._types import Cost, Usage
from tokentrail.budgets._notices import CACHE_LIMIT, WarnOnce, logger

if TYPE_CHECKING:
    from tokentrail.pricing.catalog import Catalog

__all__ = ["Estimator", "checked_count"]


def checked_count(value: object, what: str) -> int:
    """`value` as a count, or a ValueError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative int, got {value!r}")
    return int(value)


# worst-case usage built without re-validating counts checked already
_USAGE_DEFAULTS = tuple((f.name, f.default) for f in fields(Usage))
_set_attribute = object.__setattr__


def _estimate_usage(input_tokens: int, output_tokens: int) -> Usage:
    usage = Usage.__new__(Usage)
    for name, default in _USAGE_DEFAULTS:
        _set_attribute(usage, name, default)
    _set_attribute(usage, "input_tokens", input_tokens)
    _set_attribute(usage, "output_tokens", output_tokens)
    return usage


class Estimator:
    """Prices usage with `catalog` (default: the process catalog) and bounds calls before they run."""

    __slots__ = ("_cache", "_catalog", "_warn_once")

    def __init__(self, catalog: Catalog | None, warn_once: WarnOnce) -> None:
        self._catalog = catalog
        self._warn_once = warn_once
        self._cache: dict[tuple[object, ...], tuple[int | None, int]] = {}

    def price(
        self, usage: Usage, model: str | None, provider: str | None, context: Mapping[str, str] | None
    ) -> Cost:
        try:
            if self._catalog is not None:
                return self._catalog.price(usage, model, provider, None, context)
            from tokentrail.pricing.catalog import price

            return price(usage, model, provider, None, context)
        except Exception as exc:  # pricing must never break the call it guards
            logger.warning("tokentrail: could not price %r: %s", model, exc)
            return Cost.unpriced(f"pricing failed: {exc}")

    def estimate(
        self,
        model: str | None,
        provider: str | None,
        input_tokens: int,
        max_output_tokens: int | None,
        context: Mapping[str, str] | None,
    ) -> tuple[int | None, int]:
        """Worst-case (USD units or None when unpriced, output tokens) of a call before it runs."""
        key = (model, provider, input_tokens, max_output_tokens)
        if context is None:
            found = self._cache.get(key)
            if found is not None:
                return found
        output = (
            max_output_tokens
            if max_output_tokens is not None
            else self._output_bound(model, provider, input_tokens)
        )
        cost = self.price(_estimate_usage(input_tokens, output), model, provider, context)
        result = (cost.total_units if cost.priced else None, output)
        if context is None:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = result
        return result

    def _output_bound(self, model: str | None, provider: str | None, input_tokens: int) -> int:
        """The most a call may generate when the request does not say: the model's limits, if known."""
        if model:
            try:
                from tokentrail.tokens.limits import model_limits

                limits = model_limits(model, provider, self._catalog)
                if limits.max_output_tokens is not None:
                    return limits.max_output_tokens
                if limits.context_window is not None:
                    return max(limits.context_window - input_tokens, 0)
            except Exception:
                logger.debug("tokentrail: model limits unavailable for %r", model, exc_info=True)
        self._warn_once(
            ("no-output-limit", model, provider),
            "tokentrail: no output limit known for model %r: its reservations hold the input only; "
            "pass max_output_tokens (or set_model_limits) to bound spend",
            model,
        )
        return 0
