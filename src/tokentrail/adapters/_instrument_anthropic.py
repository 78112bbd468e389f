"""Patch table for `anthropic` (Anthropic, AsyncAnthropic, and the Bedrock / Vertex clients): its billable
endpoints, reached through `SyncAPIClient.request` / `AsyncAPIClient.request` (`_instrument_stainless`).
`messages` and `beta.messages` share one path; `count_tokens` is free (`NOT_TRACKED`); batches are billed
through their results, each succeeded result recorded once at batch prices; a dream once it has finished."""

from __future__ import annotations

from typing import Any

from tokentrail.adapters._base import get_field
from tokentrail.adapters._instrument_stainless import Endpoint, StainlessTarget, after_wrap
from tokentrail.adapters._instrument_target import Target

__all__ = [
    "CLIENT_MODULES",
    "ENDPOINTS",
    "NOT_TRACKED",
    "ROOT",
    "TARGETS",
    "WRAP_PATHS",
    "after_wrap",
    "surface",
    "tracked",
]


def _content_delta(event: object) -> bool:
    return bool(get_field(event, "type") == "content_block_delta")


_DREAM = Endpoint("beta.dreams", "runs:dream", server_side=True)

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("post", "/v1/messages"): Endpoint("messages", "anthropic", is_content=_content_delta),
    ("post", "/v1/complete"): Endpoint("completions", "anthropic"),
    # the batch's `results_url` (JSON lines): one record per succeeded result, once per message id
    ("get", "/v1/messages/batches/{id}/results"): Endpoint(
        "messages.batches.results", "anthropic:batch_result", once_per_response=True, items=True
    ),
    # dreams: their usage once finished, once per dream (create answers `pending`)
    ("post", "/v1/dreams"): _DREAM,
    ("get", "/v1/dreams/{id}"): _DREAM,
    ("post", "/v1/dreams/{id}/cancel"): _DREAM,
    ("post", "/v1/dreams/{id}/archive"): _DREAM,
}

_TARGET_ARGS: dict[str, Any] = {
    "endpoints": ENDPOINTS,
    "provider_names": {"Bedrock": "bedrock", "Vertex": "google"},
    "adapter": "anthropic",
}
TARGETS: tuple[Target, ...] = (
    StainlessTarget(
        "anthropic", "anthropic._base_client", "SyncAPIClient", "request", "anthropic", **_TARGET_ARGS
    ),
    StainlessTarget(
        "anthropic", "anthropic._base_client", "AsyncAPIClient", "request", "anthropic", **_TARGET_ARGS
    ),
)
ROOT = "anthropic"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("anthropic",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = ((),)

_SESSIONS_GAP = (
    "known gap: a session's `usage` is cumulative over its turns and threads (final once `terminated`), "
    "its `list_cost` includes runtime priced apart; per-request usage (`span.model_request_end` events) "
    "names no model"
)
NOT_TRACKED: dict[str, str] = {
    "messages.count_tokens": "counting tokens is free",
    "beta.messages.count_tokens": "counting tokens is free",
    "beta.dreams.list": "lists dreams, also ones made elsewhere or earlier: a dream is recorded when it "
    "is created, retrieved, canceled or archived and seen finished",
    "beta.sessions.*": f"managed agent sessions — {_SESSIONS_GAP}",
    "beta.organization.analytics.*": "organization usage reports: totals of calls already made",
}


def surface() -> list[str]:
    """The installed SDK's public methods that return a usage-bearing type (see `_coverage`)."""
    from tokentrail.adapters._coverage import stainless_surface

    return stainless_surface("anthropic", ("Anthropic", "AsyncAnthropic"))


def tracked() -> set[str]:
    """The methods of `surface()` whose API path is one of `ENDPOINTS`."""
    from tokentrail.adapters._coverage import stainless_tracked

    return stainless_tracked("anthropic", ("Anthropic", "AsyncAnthropic"), TARGETS[0])
