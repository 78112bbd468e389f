"""Exactly once: which layer records a call that several layers see.

One call can pass through a framework (LangChain, the Agents SDK, PydanticAI, LlamaIndex, a LiteLLM
callback), an instrumented client library (LiteLLM's `completion` under `instrument()`) and an
instrumented provider SDK (`openai`, `anthropic`, …). The rule:

1. An instrumented layer (`instrument()` / `wrap()`) records every call it sees, at the outermost
   instrumented layer: SDK calls made inside a call that is already being recorded pass untracked
   (`adapters._instrument_call.tracking_call`).
2. A framework integration opens a `Claim` where a model call begins, in the context the provider call
   will run in, and records the call itself only when no layer closer to the provider took the claim:
   an instrumented call that starts inside an open claim takes it (`take_claim`) and records the call
   with the attribution the framework set up (its scope); a framework claim opened inside another takes
   the outer one.
3. A provider response fetched again (a background Responses `retrieve`) is recorded once per response id.
4. A call an instrumented layer records while an OpenTelemetry span is current (an OTel GenAI
   instrumentation's span around the SDK call) marks that span `tokentrail.recorded = true`
   (`mark_otel_span`); the OTLP ingest (`tokentrail.ingest`) skips a span so marked, so a process that
   runs both `tt.instrument()` and an OTel instrumentation exporting to tokentrail is counted once.

A claim is a plain object shared by reference, so a call made in a copy of the context (a thread pool
that copies contexts, an asyncio task) still takes the claim it was opened under.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys

__all__ = ["Claim", "close_claim", "current_claim", "mark_otel_span", "open_claim", "take_claim"]


class Claim:
    """A model call a framework saw begin, which it records itself unless an instrumented call takes it."""

    __slots__ = ("_token", "closed", "outer", "owner", "taken")

    def __init__(self, owner: str, outer: Claim | None = None) -> None:
        self.owner = owner
        self.outer = outer  # the claim open around this one, offered again once this one is closed
        self.taken = False  # a layer closer to the provider records this call: the framework must not
        self.closed = False
        self._token: contextvars.Token[Claim | None] | None = None

    def __repr__(self) -> str:
        return f"Claim({self.owner!r}, taken={self.taken})"


_CURRENT: contextvars.ContextVar[Claim | None] = contextvars.ContextVar("tokentrail_claim", default=None)


def open_claim(owner: str) -> Claim:
    """Open a claim for a call about to be made in this context (close it with `close_claim`).

    A claim opened inside another one (LangChain's `ChatLiteLLM` calling LiteLLM with its callback on)
    takes the outer one: the inner layer is closer to the provider, and it records the call (or an
    instrumented layer below it does).
    """
    outer = current_claim()
    if outer is not None:
        outer.taken = True
    claim = Claim(owner, outer)
    claim._token = _CURRENT.set(claim)
    return claim


def close_claim(claim: Claim) -> None:
    """Stop offering `claim` to calls made in this context; harmless from another context or twice.

    Closed from another context than it was opened in (a framework ending a call in another task), the
    claim stays set in its own context but is passed over there: calls made later take the claim around it.
    """
    claim.closed = True
    token, claim._token = claim._token, None
    if token is None:
        return
    with contextlib.suppress(
        ValueError, RuntimeError
    ):  # closed from another context than it was opened in: nothing to restore there
        _CURRENT.reset(token)


def current_claim() -> Claim | None:
    """The claim calls made here would take (None outside any framework call)."""
    claim = _CURRENT.get()
    while claim is not None and claim.closed:
        claim = claim.outer
    return claim


def take_claim() -> Claim | None:
    """An instrumented call begins here: take the open claim, if any, so its framework does not record."""
    claim = _CURRENT.get()
    if claim is None:
        return None
    if claim.closed:
        claim = current_claim()
        if claim is None:
            return None
    claim.taken = True
    return claim


RECORDED_ATTRIBUTE = "tokentrail.recorded"


def mark_otel_span() -> None:
    """An instrumented call begins here: mark the current OpenTelemetry span, if one is recording, as a
    call tokentrail records itself (rule 4). Costs nothing when OpenTelemetry is not imported."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return
    try:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(RECORDED_ATTRIBUTE, True)
    except Exception:  # never into the caller's call
        return
