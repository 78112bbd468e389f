"""Patch table for `anthropic` (Anthropic, AsyncAnthropic, and the Bedrock / Vertex clients): its billable
endpoints, reached through `SyncAPIClient.request` / `AsyncAPIClient.request` (`_instrument_stainless`).
`messages` and `beta.messages` share one path; `count_tokens` is free (`NOT_TRACKED`); batches are billed
through their results, each succeeded result recorded once at batch prices; a dream once it has finished;
a Managed Agents session per model request read from its events (`agent_sessions`)."""

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
# Managed Agents sessions: each model request once (`span.model_request_end` events as they are read, by
# session or thread), at the model of the session's or thread's agent, remembered from the objects seen;
# a terminated session's runtime once, unpriced (agent_sessions); a dream's session records nothing
_SESSIONS = Endpoint(
    "beta.sessions",
    "agent_sessions:anthropic",
    server_side=True,
    scoped=True,  # an event names no session: the request path does
    event_items=(b"span.model_request_end",),
)

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
    ("post", "/v1/sessions"): _SESSIONS,
    ("get", "/v1/sessions"): _SESSIONS,
    ("get", "/v1/sessions/{id}"): _SESSIONS,
    ("post", "/v1/sessions/{id}"): _SESSIONS,  # update
    ("post", "/v1/sessions/{id}/archive"): _SESSIONS,
    ("get", "/v1/sessions/{id}/events"): _SESSIONS,  # events.list
    ("get", "/v1/sessions/{id}/events/stream"): _SESSIONS,
    ("get", "/v1/sessions/{id}/threads"): _SESSIONS,
    ("get", "/v1/sessions/{id}/threads/{id}"): _SESSIONS,
    ("post", "/v1/sessions/{id}/threads/{id}/archive"): _SESSIONS,
    ("get", "/v1/sessions/{id}/threads/{id}/events"): _SESSIONS,
    ("get", "/v1/sessions/{id}/threads/{id}/stream"): _SESSIONS,
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

NOT_TRACKED: dict[str, str] = {
    "messages.count_tokens": "counting tokens is free",
    "beta.messages.count_tokens": "counting tokens is free",
    "beta.dreams.list": "lists dreams, also ones made elsewhere or earlier: a dream is recorded when it "
    "is created, retrieved, canceled or archived and seen finished",
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
