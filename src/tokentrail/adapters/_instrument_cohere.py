"""Patch table for `cohere`: v2 (`ClientV2`, `AsyncClientV2`: chat, chat_stream, embed, rerank) and the v1
base client (`Client`, `AsyncClient`: chat, chat_stream, embed, rerank and the legacy generate, summarize,
classify), one record per HTTP request.

Embed and rerank report `meta.billed_units`: tokens are read as such; rerank is billed in search units,
classify in classifications: `tokentrail.Usage` cannot carry those, so such calls are recorded `unknown` with
the units in the reason.
v1 `Client.embed` splits its texts into batches and sends them from a thread pool: each batch is one
record, made on a pool thread (so a `tt.scope` around the call does not reach it; `AsyncClient.embed`
gathers on the caller's loop and keeps the scope).

`ClientV2` copies its bound `chat` / `chat_stream` onto each client object when it is built (to warn
about experimental arguments, on by default), so a client built before `instrument()` keeps the
unpatched methods: call `instrument()` first, or `wrap()` such a client.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokentrail.adapters._instrument_target import Target

__all__ = ["CLIENT_MODULES", "NOT_TRACKED", "ROOT", "TARGETS", "WRAP_PATHS", "surface", "tracked"]

_CONTENT_EVENTS = frozenset({"content-delta", "tool-plan-delta", "tool-call-start", "tool-call-delta"})


@dataclass(frozen=True)
class _ChatTarget(Target):
    adapter: str | None = "cohere"

    def is_content(self, event: object) -> bool:
        return getattr(event, "type", None) in _CONTENT_EVENTS


_V2 = "cohere.v2.client"
_V1 = "cohere.base_client"
_METHODS = (("chat", "never"), ("chat_stream", "always"), ("embed", "never"), ("rerank", "never"))
_LEGACY_METHODS = ("generate", "summarize", "classify")  # v1 only; classify is billed in classifications

TARGETS: tuple[Target, ...] = (
    *(
        _ChatTarget("cohere", module, cls, attr, "cohere", streaming=streaming)
        for module, classes in (
            (_V2, ("V2Client", "AsyncV2Client")),
            (_V1, ("BaseCohere", "AsyncBaseCohere")),
        )
        for cls in classes
        for attr, streaming in _METHODS
    ),
    *(
        _ChatTarget("cohere", _V1, cls, attr, "cohere", streaming="never")
        for cls in ("BaseCohere", "AsyncBaseCohere")
        for attr in _LEGACY_METHODS
    ),
)

# methods that make their requests through a tracked one
_THROUGH = {"Client.embed": "BaseCohere.embed", "AsyncClient.embed": "AsyncBaseCohere.embed"}

_RAW = (
    "raw-response variant (`client.with_raw_response`): the client's own method is tracked, this is not yet"
)
_JOBS = "asynchronous batch job: billed when the job runs, results delivered as files, not per call"
_LEGACY_STREAM = (
    "legacy v1 generate stream: its stream-end response carries no meta.billed_units in the SDK's schema "
    "(GenerateStreamEndResponse); not tracked yet"
)
NOT_TRACKED: dict[str, str] = {
    **{
        f"{c}.{m}": "free endpoint (tokenizer)"
        for c in ("BaseCohere", "AsyncBaseCohere", "Client", "AsyncClient")
        for m in ("tokenize", "detokenize")
    },
    **{f"{c}.generate_stream": _LEGACY_STREAM for c in ("BaseCohere", "AsyncBaseCohere")},
    **{f"{c}.parse": "document parsing (v2 parse): not tracked yet" for c in ("V2Client", "AsyncV2Client")},
    **{f"{c}.wait": "waits for a job to finish; makes no billable call" for c in ("Client", "AsyncClient")},
    **{
        f"{prefix}{c}.{m}": _JOBS
        for prefix in ("", "Async", "Raw", "AsyncRaw")
        for c in ("BatchesClient", "EmbedJobsClient")
        for m in ("create", "get", "list", "retrieve")
    },
    **{
        f"{prefix}{c}.{m}": _RAW
        for prefix in ("Raw", "AsyncRaw")
        for c in ("BaseCohere", "V2Client")
        for m in (
            "chat",
            "chat_stream",
            "embed",
            "rerank",
            "classify",
            "generate",
            "summarize",
            "tokenize",
            "detokenize",
            "parse",
        )
    },
}


def surface() -> list[str]:
    """The installed SDK's public methods whose return type carries usage (`adapters._surface` rule)."""
    from tokentrail.adapters._surface import sdk_classes, usage_methods

    return usage_methods(sdk_classes("cohere", lambda k: True, skip=("cohere.types", "cohere.v2.types")))


def tracked() -> set[str]:
    """The `Class.method` names TARGETS track, and the methods that go through them."""
    from tokentrail.adapters._surface import tracked_names

    return tracked_names(TARGETS, _THROUGH)


ROOT = "cohere"  # the package whose presence means the SDK is installed
CLIENT_MODULES = ("cohere",)
WRAP_PATHS: tuple[tuple[str, ...], ...] = ((),)
