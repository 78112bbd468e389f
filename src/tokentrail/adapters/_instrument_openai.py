"""Patch table for `openai` (OpenAI, AsyncOpenAI, AzureOpenAI, AsyncAzureOpenAI): its billable endpoints.

Every method of the SDK reaches the API through `SyncAPIClient.request` / `AsyncAPIClient.request`
(`_instrument_stainless`); the endpoints below are the paths whose responses report usage. The rest of
the API surface is listed in `NOT_TRACKED` with the reason, and `surface()` finds every method of the
installed SDK that returns a usage-bearing type, so a test fails when the SDK grows one we do not track.
"""

from __future__ import annotations

from typing import Any

from tokentrail.adapters._base import get_field, text_value
from tokentrail.adapters._instrument_stainless import Endpoint, StainlessTarget, after_wrap
from tokentrail.adapters._instrument_target import Target
from tokentrail.adapters.runs import is_batch_output

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


def _chat_content(event: object) -> bool:
    for choice in get_field(event, "choices") or ():
        delta = get_field(choice, "delta")
        if get_field(delta, "content") or get_field(delta, "tool_calls"):
            return True
    return False


def _delta_event(event: object) -> bool:
    kind = text_value(get_field(event, "type"))
    return kind is not None and kind.endswith(".delta")


def _partial_image(event: object) -> bool:
    kind = text_value(get_field(event, "type"))
    return kind is not None and kind.endswith(".partial_image")


_RESPONSES = Endpoint("responses", "openai", is_content=_delta_event, once_per_response=True)
_EVAL_RUN = Endpoint("evals.runs", "runs:eval_run", server_side=True)
# hosted agent sessions: each finished turn once (its events as they are read, or turns listed or
# retrieved), at the model of the session's agent, remembered from the session objects seen
# (agent_sessions); the session's cumulative `usage` is never recorded
_SESSIONS = Endpoint(
    "beta.agents.sessions",
    "agent_sessions:openai",
    server_side=True,
    event_items=(
        b"agent.session.turn.completed",
        b"agent.session.turn.failed",
        b"agent.session.turn.cancelled",
        b"agent.session.created",
    ),
)

# (HTTP method, path) -> endpoint; a `{…}` segment stands for an id
ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("post", "/chat/completions"): Endpoint(
        "chat.completions", "openai", is_content=_chat_content, stream_usage_option=True
    ),
    ("post", "/responses"): _RESPONSES,
    ("get", "/responses/{id}"): _RESPONSES,  # retrieve: a background response, recorded when finished
    ("post", "/responses/{id}/cancel"): _RESPONSES,
    ("post", "/responses/compact"): Endpoint("responses.compact", "openai"),
    ("post", "/completions"): Endpoint(
        "completions", "openai", is_content=_chat_content, stream_usage_option=True
    ),
    ("post", "/embeddings"): Endpoint("embeddings", "openai:extract_embeddings"),
    ("post", "/images/generations"): Endpoint(
        "images.generate", "openai:extract_images", _partial_image, stream="openai:ImageStream"
    ),
    ("post", "/images/edits"): Endpoint(
        "images.edit", "openai:extract_images", _partial_image, stream="openai:ImageStream"
    ),
    ("post", "/images/variations"): Endpoint("images.create_variation", "openai:extract_images"),
    ("post", "/audio/transcriptions"): Endpoint(
        "audio.transcriptions",
        "openai:extract_transcription",
        _delta_event,
        stream="openai:TranscriptionStream",
    ),
    ("post", "/decisions"): Endpoint("decisions", "openai"),  # Responses-shaped usage
    # a file's content: a Batch output file (JSON lines) is one record per succeeded request at batch
    # prices, once per response id; any other file records nothing (its first line is not read further)
    ("get", "/files/{id}/content"): Endpoint(
        "files.content (Batch output)",
        "runs:batch_output_line",
        once_per_response=True,
        items=True,
        item_sniff=is_batch_output,
    ),
    # eval runs: per_model_usage once the run has finished, one record per model, once per run
    ("post", "/evals/{id}/runs"): _EVAL_RUN,
    ("get", "/evals/{id}/runs/{id}"): _EVAL_RUN,
    ("post", "/evals/{id}/runs/{id}/cancel"): _EVAL_RUN,
    ("post", "/agents/sessions"): _SESSIONS,  # create; stream=True: the session's events
    ("get", "/agents/sessions"): _SESSIONS,
    ("get", "/agents/sessions/{id}"): _SESSIONS,
    ("post", "/agents/sessions/{id}"): _SESSIONS,  # update
    ("get", "/agents/sessions/{id}/events"): _SESSIONS,  # events.stream (and the sessions.stream helper)
    ("get", "/agents/sessions/{id}/turns"): _SESSIONS,
    ("get", "/agents/sessions/{id}/turns/{id}"): _SESSIONS,
    ("get", "/agents/sessions/{id}/subagents/{id}/turns"): _SESSIONS,
    ("get", "/agents/sessions/{id}/subagents/{id}/turns/{id}"): _SESSIONS,
    ("post", "/audio/speech"): Endpoint(
        "audio.speech", "openai:extract_speech", _delta_event, stream="openai:SpeechStream", audio=True
    ),
}

_TARGET_ARGS: dict[str, Any] = {
    "endpoints": ENDPOINTS,
    "provider_names": {"Azure": "azure"},
    "adapter": "openai",
    "streaming": "flag",
}
TARGETS: tuple[Target, ...] = (
    StainlessTarget("openai", "openai._base_client", "SyncAPIClient", "request", "openai", **_TARGET_ARGS),
    StainlessTarget("openai", "openai._base_client", "AsyncAPIClient", "request", "openai", **_TARGET_ARGS),
)
ROOT = "openai"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("openai",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = ((),)  # the client itself: its `request`

# Methods that return a usage-bearing type but are not tracked, by resource path ("x.*": all below x).
_NOT_A_CALL = "fetches a stored object: not a new model call"
NOT_TRACKED: dict[str, str] = {
    "admin.organization.usage.*": "organization usage reports: totals of calls already made",
    "batches.*": "Batch API jobs: each request is recorded from the output file (files.content); the "
    "batch's `usage` is the total of those requests",
    "beta.threads.*": "Assistants API runs: the API was shut down on 2026-08-26",
    "chat.completions.list": _NOT_A_CALL,
    "chat.completions.retrieve": _NOT_A_CALL,
    "chat.completions.update": _NOT_A_CALL,
    "conversations.items.*": _NOT_A_CALL,
    "evals.runs.list": "lists runs, also ones made elsewhere or earlier: a run is recorded when it is "
    "created, retrieved or canceled and seen finished",
    "evals.runs.output_items.*": "per-sample usage of a run: part of the run's per_model_usage, recorded "
    "with the run",
    "responses.input_items.list": _NOT_A_CALL,
    "beta.responses.input_items.list": _NOT_A_CALL,
    "responses.input_tokens.count": "counting input tokens is free",
    "beta.responses.input_tokens.count": "counting input tokens is free",
}


def surface() -> list[str]:
    """The installed SDK's public methods that return a usage-bearing type (see `_coverage`)."""
    from tokentrail.adapters._coverage import stainless_surface

    return stainless_surface("openai", ("OpenAI", "AsyncOpenAI"))


def tracked() -> set[str]:
    """The methods of `surface()` whose API path is one of `ENDPOINTS`."""
    from tokentrail.adapters._coverage import stainless_tracked

    return stainless_tracked("openai", ("OpenAI", "AsyncOpenAI"), TARGETS[0])
