"""Patch table for `google-genai` (`google.genai.Client`: `models`, `aio.models` and `aio.live`).

With automatic function calling, one `generate_content` call makes several requests inside the SDK;
it is recorded once, with the usage of the response the caller gets (the last request's).
`embed_content` is tracked with what the response reports (see `adapters.gemini`: tokens, else `unknown`).
A Live API session (`aio.live.connect`, a WebSocket) records one call per model turn, as its usage arrives
(`adapters._instrument_live`); its `AsyncSession.receive` / `start_stream` read through the tracked session.
`surface()`, `tracked()` and `NOT_TRACKED` declare the coverage (see `adapters._surface` for the rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tokentrail.adapters._instrument_target import Request, Target, first_int

if TYPE_CHECKING:
    from tokentrail.adapters._instrument_target import Call

__all__ = ["CLIENT_MODULES", "NOT_TRACKED", "ROOT", "TARGETS", "WRAP_PATHS", "surface", "tracked"]


@dataclass(frozen=True)
class _GenerateTarget(Target):
    adapter: str | None = "gemini"

    def output_limit(self, request: Request) -> int | None:
        return first_int(request.kwargs.get("config"))


@dataclass(frozen=True)
class _LiveTarget(Target):
    """`AsyncLive.connect`: an async context manager opening a session whose turns record themselves."""

    adapter: str | None = "gemini"

    def reserves(self, request: Request) -> bool:
        return False  # a session is not one request: its turns count against budgets as they are recorded

    def deliver(self, call: Call, request: Request, response: Any, *, asynchronous: bool) -> Any:
        from tokentrail.adapters._instrument_live import LiveConnection

        return LiveConnection(response, call)  # type: ignore[arg-type]


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
    _GenerateTarget("google-genai", _MODELS, "Models", "embed_content", "google", streaming="never"),
    _GenerateTarget("google-genai", _MODELS, "AsyncModels", "embed_content", "google", streaming="never"),
    _LiveTarget("google-genai", "google.genai.live", "AsyncLive", "connect", "google", streaming="never"),
)

# methods that make their requests through a tracked one (verified in google/genai/chats.py)
_THROUGH = {
    "Chat.send_message": "Models.generate_content",
    "Chat.send_message_stream": "Models.generate_content_stream",
    "AsyncChat.send_message": "AsyncModels.generate_content",
    "AsyncChat.send_message_stream": "AsyncModels.generate_content_stream",
    # verified in google/genai/live.py: both read every server message through AsyncSession._receive, which
    # the session connect() opened reads through its tracker
    "AsyncSession.receive": "AsyncLive.connect",
    "AsyncSession.start_stream": "AsyncLive.connect",
}

_FREE = "free endpoint (token counting)"
_CACHE = (
    "cache management: storage is billed per token-hour, not per call; the cached tokens are recorded "
    "as cache reads on generate_content"
)
_IMAGES = "billed per generated image/mask; the response reports no usage and Usage has no image-count unit"
NOT_TRACKED: dict[str, str] = {
    **{f"{c}.{m}": _FREE for c in ("Models", "AsyncModels") for m in ("count_tokens", "compute_tokens")},
    **{f"{c}.{m}": _CACHE for c in ("Caches", "AsyncCaches") for m in ("create", "get", "list", "update")},
    **{
        f"{c}.{m}": _IMAGES
        for c in ("Models", "AsyncModels")
        for m in ("generate_images", "edit_image", "upscale_image", "recontext_image", "segment_image")
    },
    **{
        f"{c}.generate_videos": "long-running operation billed per second of video; reports no usage"
        for c in ("Models", "AsyncModels")
    },
}


def surface() -> list[str]:
    """The installed SDK's public methods whose return type carries usage (`adapters._surface` rule)."""
    from tokentrail.adapters._surface import sdk_classes, usage_methods

    return usage_methods(
        sdk_classes("google.genai", lambda k: True, skip=("google.genai.types", "google.genai.tests"))
    )


def tracked() -> set[str]:
    """The `Class.method` names TARGETS track, and the methods that go through them."""
    from tokentrail.adapters._surface import tracked_names

    return tracked_names(TARGETS, _THROUGH)


ROOT = "google.genai"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("google.genai",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = (("models",), ("aio", "models"), ("aio", "live"))
