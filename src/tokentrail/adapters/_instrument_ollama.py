"""Patch table for `ollama` (`Client`, `AsyncClient`: chat and generate, `stream=True` included; embed, and
the legacy embeddings, which reports no counts and is recorded `unknown`; systemone, System One scoring, which
reports `usage.input_tokens` / `output_tokens` and cannot stream)."""

from __future__ import annotations

from tokentrail.adapters._instrument_target import Target

__all__ = ["CLIENT_MODULES", "NOT_TRACKED", "ROOT", "TARGETS", "WRAP_PATHS", "surface", "tracked"]

_CLIENT = "ollama._client"

# the model may be passed positionally (`client.chat("llama3.2", messages)`): index 0 after self
TARGETS: tuple[Target, ...] = tuple(
    Target("ollama", _CLIENT, cls, attr, "ollama", model_position=0, adapter="ollama")
    for cls in ("Client", "AsyncClient")
    for attr in ("chat", "generate", "embed", "embeddings", "systemone")
)

NOT_TRACKED: dict[str, str] = {}


def surface() -> list[str]:
    """The installed SDK's public methods whose return type carries usage (`adapters._surface` rule)."""
    from tokentrail.adapters._surface import sdk_classes, usage_methods

    return usage_methods(sdk_classes("ollama", lambda k: True))


def tracked() -> set[str]:
    """The `Class.method` names TARGETS track."""
    from tokentrail.adapters._surface import tracked_names

    return tracked_names(TARGETS)


ROOT = "ollama"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("ollama",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = ((),)
