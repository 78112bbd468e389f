"""Patch table for `google-genai` (`google.genai.Client`: `models` and `aio.models`).

With automatic function calling, one `generate_content` call makes several requests inside the SDK;
it is recorded once, with the usage of the response the caller gets (the last request's).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokentrail.adapters._instrument_target import Request, Target, first_int

__all__ = ["CLIENT_MODULES", "ROOT", "TARGETS", "WRAP_PATHS"]


@dataclass(frozen=True)
class _GenerateTarget(Target):
    adapter: str | None = "gemini"

    def output_limit(self, request: Request) -> int | None:
        return first_int(request.kwargs.get("config"))


_MODELS = "google.genai.models"

TARGETS: tuple[Target, ...] = (
    _GenerateTarget("google-genai", _MODELS, "Models", "generate_content", "google", streaming="never"),
    _GenerateTarget("google-genai", _MODELS, "AsyncModels", "generate_content", "google", streaming="never"),
    _GenerateTarget(
        "google-genai", _MODELS, "Models", "generate_content_stream", "google", streaming="always"
    ),
    _GenerateTarget(
        "google-genai", _MODELS, "AsyncModels", "generate_content_stream", "google", streaming="always"
    ),
)
ROOT = "google.genai"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("google.genai",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = (("models",), ("aio", "models"))
