"""Patch table for `ollama` (`Client`, `AsyncClient`: chat and generate, `stream=True` included)."""

from __future__ import annotations

from tokentrail.adapters._instrument_target import Target

__all__ = ["CLIENT_MODULES", "ROOT", "TARGETS", "WRAP_PATHS"]

_CLIENT = "ollama._client"

# the model may be passed positionally (`client.chat("llama3.2", messages)`): index 0 after self
TARGETS: tuple[Target, ...] = tuple(
    Target("ollama", _CLIENT, cls, attr, "ollama", model_position=0, adapter="ollama")
    for cls in ("Client", "AsyncClient")
    for attr in ("chat", "generate")
)
ROOT = "ollama"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("ollama",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = ((),)
