"""Tracking a Gemini Live API session (`client.aio.live.connect(...)`, a WebSocket): one record per model turn.

`connect()` is the tracked call (`_instrument_google`); what it returns is wrapped in `LiveConnection`,
which, once the session is open, routes every server message through `LiveSession.observe`: the SDK reads
each message with `AsyncSession._receive` (both `receive()` and `start_stream()` do), so the session's own
`_receive` is replaced, on that one session object, by one that hands each message on after looking at it.
The caller gets the SDK's own `AsyncSession`.

A turn begins with the first server message of model output (`serverContent`, `toolCall`) or usage after
the last turn ended, and ends with the message carrying `usageMetadata` — Google reports usage per model
response (see `adapters.gemini`), so each such message is one record, in the scope that was active when
`connect()` was entered. Each turn is its own `Call`, recorded once (`Call.done`); it ends without usage
when its turn completed and the next turn's output began with no `usageMetadata` between, or when the
session closes first: then it is recorded `unknown` with that reason, never dropped, never counted twice.
Timing: a turn runs from the `_receive` that brought its first message to its usage report.
No budget room is held for a session (it is not one request); its turns count against budgets as recorded.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, cast

from tokentrail.adapters._instrument_call import Call

if TYPE_CHECKING:
    from tokentrail.adapters.gemini import LiveTurn

__all__ = ["LiveConnection", "LiveSession"]

logger = logging.getLogger("tokentrail.adapters")

_TURN_READER = "gemini:LiveTurn"


def _field(message: object, name: str) -> Any:
    return getattr(message, name, None)


class LiveSession:
    """The turns of one open Live session; `observe` takes each server message, `end` closes the last turn."""

    __slots__ = ("accumulator", "connect", "ended", "turn", "turn_complete")

    def __init__(self, connect: Call) -> None:
        self.connect = connect  # the tracked connect() call: tracker, target, model, capture queue, context
        self.turn: Call | None = None
        self.accumulator: LiveTurn | None = None
        self.turn_complete = False  # the open turn said turnComplete/interrupted; its usage may still follow
        self.ended = False

    def _open(self, waited: float) -> None:
        template = self.connect
        turn = Call(template.tracker, template.target, template.provider, template.model)
        turn.captures = template.captures
        turn.context = template.context  # the scope active when connect() was entered
        turn.stream_reader = _TURN_READER
        turn.started = waited
        accumulator = cast("LiveTurn", turn.new_accumulator())
        self.turn, self.accumulator, self.turn_complete = turn, accumulator, False

    def _close(self, *, aborted: bool, ending: str | None = None) -> None:
        turn, accumulator = self.turn, self.accumulator
        self.turn = self.accumulator = None
        self.turn_complete = False
        if turn is None or accumulator is None:
            return
        if ending is not None and not accumulator.final:
            accumulator.ending = ending
        turn.finish_stream(accumulator, aborted=aborted)

    def observe(self, message: object, waited: float) -> None:
        """One server message, read by a `_receive` called at `waited` (`time.perf_counter()`); never raises."""
        try:
            self._observe(message, waited)
        except Exception:
            logger.debug("tokentrail could not read a Live API server message", exc_info=True)

    def _observe(self, message: object, waited: float) -> None:
        if self.ended or self.connect.tracker is None:
            return
        content = _field(message, "server_content")
        output = _field(message, "tool_call") is not None or (
            content is not None
            and (
                _field(content, "model_turn") is not None
                or _field(content, "output_transcription") is not None
            )
        )
        usage = _field(message, "usage_metadata") is not None
        if not (output or usage or content is not None):
            return  # setupComplete, goAway, sessionResumptionUpdate: nothing of a model turn
        if self.turn is not None and self.turn_complete and output:
            self._close(aborted=False, ending="the next turn began first")
        if self.turn is None:
            if not (output or usage):
                return  # a bare turnComplete/interrupted after a reported turn: nothing billed
            self._open(waited)
        turn, accumulator = self.turn, self.accumulator
        assert turn is not None and accumulator is not None
        if output and turn.first_token_at is None:
            turn.first_token_at = time.perf_counter()
        accumulator.feed(message)
        if usage:
            self._close(aborted=False)
        elif content is not None and (_field(content, "turn_complete") or _field(content, "interrupted")):
            self.turn_complete = True

    def end(self) -> None:
        """The session closed: a turn still waiting for its usage is recorded `unknown`; never raises."""
        if self.ended:
            return
        self.ended = True
        try:
            self._close(aborted=True, ending="the session closed first")
        except Exception:
            logger.debug("tokentrail could not close a Live API turn", exc_info=True)


class LiveConnection:
    """What the tracked `connect()` returns: the SDK's async context manager, entered and exited unchanged,
    tracking the session it opens."""

    __slots__ = ("_tt_call", "_tt_manager", "_tt_session")

    def __init__(self, manager: Any, call: Call) -> None:
        self._tt_manager = manager
        self._tt_call = call
        self._tt_session: LiveSession | None = None

    async def __aenter__(self) -> Any:
        call = self._tt_call
        call.keep_context()  # the scope active as connect() is entered attributes every turn
        try:
            session = await self._tt_manager.__aenter__()
        except BaseException:
            call.failed()  # the session did not open: nothing billed, the error counted
            raise
        self._tt_session = _attach(session, call)
        return session

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self._tt_manager.__aexit__(*exc_info)
        finally:
            tracked = self._tt_session
            if tracked is not None:
                tracked.end()
            self._tt_call.discard()  # the session itself is no record; its turns are

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tt_manager, name)


def _attach(session: Any, call: Call) -> LiveSession | None:
    """Route `session`'s server messages through a `LiveSession` (None when it cannot be tracked)."""
    try:
        tracked = LiveSession(call)
        receive = session._receive  # the SDK's bound method: every server message passes through it

        async def _receive() -> Any:
            waited = time.perf_counter()
            message = await receive()
            tracked.observe(message, waited)
            return message

        session._receive = _receive
        return tracked
    except Exception:
        logger.debug("tokentrail could not track a Live API session", exc_info=True)
        return None
