"""Model limits: context window and maximum output tokens.

The context window comes from the price catalog (genai-prices records it for most models); user
limits set with `set_model_limits` win over it. The catalog carries no maximum output, so
`max_output_tokens` is known only when the user sets it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tokentrail.pricing.catalog import Catalog, default_catalog

__all__ = ["ModelLimits", "clear_model_limits", "context_window", "model_limits", "set_model_limits"]


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """What a model accepts: `None` where nothing is known, never a guessed number."""

    context_window: int | None
    max_output_tokens: int | None
    source: str  # "user", "catalog", "user+catalog" or "unknown"


_user_limits: dict[tuple[str, str | None], tuple[int | None, int | None]] = {}
_lock = threading.Lock()


def set_model_limits(
    model: str,
    *,
    context_window: int | None = None,
    max_output_tokens: int | None = None,
    provider: str | None = None,
) -> None:
    """Declare `model`'s limits (for a fine-tune, a self-hosted model, or to correct the catalog)."""
    for name, value in (("context_window", context_window), ("max_output_tokens", max_output_tokens)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    with _lock:
        _user_limits[(_slug(model), provider.lower() if provider else None)] = (
            context_window,
            max_output_tokens,
        )


def clear_model_limits() -> None:
    """Forget every limit set with `set_model_limits`."""
    with _lock:
        _user_limits.clear()


def model_limits(model: str, provider: str | None = None, catalog: Catalog | None = None) -> ModelLimits:
    """Context window and max output of `model`: user limits first, then the price catalog."""
    user_window, user_output = _user_limits_for(model, provider)
    catalog_window = None
    if user_window is None:
        match = (catalog or default_catalog()).resolve(model, provider)
        if match is not None:
            if user_output is None:  # limits set for the catalog name apply to its other spellings
                user_window, user_output = _user_limits_for(_catalog_model_id(match), provider)
            catalog_window = getattr(match, "context_window", None) if user_window is None else None
    window = user_window if user_window is not None else catalog_window
    parts = [
        name for name, used in (("user", user_window or user_output), ("catalog", catalog_window)) if used
    ]
    return ModelLimits(window, user_output, "+".join(parts) or "unknown")


def context_window(model: str, provider: str | None = None) -> int | None:
    """Context window of `model` in tokens, or None when neither the user nor the catalog knows it."""
    return model_limits(model, provider).context_window


def _catalog_model_id(match: object) -> str:
    found = getattr(match, "model_id", None) or getattr(match, "model", None)
    return found if isinstance(found, str) else ""


def _user_limits_for(model: str, provider: str | None) -> tuple[int | None, int | None]:
    if not _user_limits or not model:
        return None, None
    name = _slug(model)
    if provider is not None:
        found = _user_limits.get((name, provider.lower()))
        if found is not None:
            return found
    return _user_limits.get((name, None), (None, None))


def _slug(name: str) -> str:
    """The key limits are stored under, the same one user prices use (`pricing.names.slug`)."""
    from tokentrail.pricing.names import slug

    return slug(name)
