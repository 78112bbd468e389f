"""LiteLLM: every successful `litellm.completion` / `acompletion` recorded once, through LiteLLM's callbacks.

    from tokentrail.integrations import litellm as tt_litellm
    tt_litellm.enable()          # or: litellm.callbacks = [tokentrail.litellm_callback()]

Each call is read with `tokentrail.capture(response, provider="litellm")` and recorded with the provider
that served it (LiteLLM's `custom_llm_provider`), the call's duration and LiteLLM's own `response_cost`
as the provider-reported cost. Streams are recorded from LiteLLM's rebuilt complete response once they
end. A stream whose provider reported no usage (an OpenAI stream without
`stream_options={"include_usage": True}`) carries LiteLLM's local count: it is recorded `estimated`.
Failed calls are not recorded; they are counted under `error_counts["call_errors"]`.

When the record is written: sync calls in LiteLLM's logging thread, shortly after the call returns (or
the stream ends); `acompletion` in LiteLLM's success deployment hook, before the call returns, so a
short-lived event loop (`asyncio.run(litellm.acompletion(...))`) closing before LiteLLM's logging task
runs loses nothing; async streams in LiteLLM's success task when the stream ends.

Exactly once (`tokentrail._claims`): LiteLLM runs `log_pre_api_call` inline, in the caller's context,
just before the provider request. The callback opens a claim there, keyed by `litellm_call_id`; an SDK
call `instrument()` tracks inside it (LiteLLM calling the `openai` SDK under
`instrument(providers=["openai"])`) takes the claim and records itself, and the callback then records
nothing. While `instrument()` covers `litellm` itself, the callback stands down entirely.

Importing this module imports litellm (it is not a dependency of tokentrail).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tokentrail._claims import Claim, close_claim, current_claim, open_claim

__all__ = ["TokentrailLogger", "disable", "enable", "is_enabled", "litellm_callback"]

logger = logging.getLogger("tokentrail.integrations")

_litellm: Any = importlib.import_module("litellm")
_CustomLogger: Any = importlib.import_module("litellm.integrations.custom_logger").CustomLogger

_REMEMBERED = 4096  # call ids kept to record each call once (several of LiteLLM's hooks may fire)
# LiteLLM copies `litellm.callbacks` into these lists when a call starts: `disable()` empties them too
_LITELLM_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_input_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


# calls recorded, counted or left to others — by any logger of the process: LiteLLM may run a call's
# queued async hooks long after it (in the next event loop), after a logger was replaced
_SETTLED: OrderedDict[str, None] = OrderedDict()
_SETTLED_LOCK = threading.Lock()


class TokentrailLogger(_CustomLogger):  # type: ignore[misc]
    """LiteLLM `CustomLogger` recording each successful call on a tokentrail tracker."""

    def __init__(self, tracker: Any = None) -> None:
        super().__init__()
        self.tracker = tracker
        self._claims: OrderedDict[str, Claim] = OrderedDict()
        self._lock = threading.Lock()

    # -- LiteLLM hooks ---------------------------------------------------------------------------------

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """Inline, in the caller's context, before each provider request (retries included)."""
        call_id = _call_id(kwargs)
        if call_id is None or _instrumented():
            return
        try:
            with self._lock:
                previous = self._claims.pop(call_id, None)
            if previous is not None:
                self._close_here(previous)  # a retry: only the attempt that answers decides
            claim = open_claim("litellm")
            with self._lock:
                self._claims[call_id] = claim
                if len(self._claims) > _REMEMBERED:
                    self._claims.popitem(last=False)
        except Exception:
            logger.debug("tokentrail could not open a claim for a LiteLLM call", exc_info=True)

    def log_post_api_call(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """Inline after the provider answered: SDK calls made after this are not part of the call."""
        self._release(_call_id(kwargs))

    async def async_post_call_success_deployment_hook(
        self, request_data: Any, response: Any, call_type: Any
    ) -> Any:
        """Awaited inside `acompletion` before it returns (not streams): record here, not in a task the
        caller's event loop may close before it runs."""
        call_id = _call_id(request_data)
        self._release(call_id)
        if call_id is not None and not _is_stream(request_data) and _has_usage(response):
            self._record(call_id, _details(request_data), response, _started(request_data), datetime.now())
        return None

    async def async_post_call_streaming_deployment_hook(
        self, request_data: Any, response_chunk: Any, call_type: Any
    ) -> Any:
        """Awaited in the reader's task with a stream's last chunks: the claim can be closed there."""
        self._release(_call_id(request_data))
        return None

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record(_call_id(kwargs), _details(kwargs), response_obj, start_time, end_time)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(_call_id(kwargs), _details(kwargs), response_obj, start_time, end_time)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._failed(kwargs)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._failed(kwargs)

    # -- exactly once ----------------------------------------------------------------------------------

    def _close_here(self, claim: Claim) -> None:
        """Close `claim` if this is the context it is current in (elsewhere closing could not undo it)."""
        if current_claim() is claim:
            close_claim(claim)

    def _release(self, call_id: str | None) -> None:
        if call_id is None:
            return
        try:
            claim = self._claims.get(call_id)
            if claim is not None:
                self._close_here(claim)
        except Exception:
            logger.debug("tokentrail could not close a LiteLLM claim", exc_info=True)

    def _settle(self, call_id: str | None) -> bool:
        """Whether this hook records (or counts) the call: the first to settle it, unless an
        instrumented SDK call inside it took its claim and records it itself."""
        if call_id is None:
            return True
        with _SETTLED_LOCK:
            if call_id in _SETTLED:
                return False
            _SETTLED[call_id] = None
            if len(_SETTLED) > _REMEMBERED:
                _SETTLED.popitem(last=False)
        with self._lock:
            claim = self._claims.pop(call_id, None)
        return claim is None or not claim.taken

    # -- recording -------------------------------------------------------------------------------------

    def _tracker(self) -> Any:
        from tokentrail.adapters.hooks import resolve_tracker

        return resolve_tracker(self.tracker)

    def _record(
        self, call_id: str | None, kwargs: dict[str, Any], response_obj: Any, start: Any, end: Any
    ) -> None:
        try:
            if _instrumented() or not self._settle(call_id):
                return
            from tokentrail.adapters import capture
            from tokentrail.adapters.litellm import estimated

            streamed = bool(kwargs.get("stream"))
            response = _complete_response(kwargs, response_obj) if streamed else response_obj
            captured = capture(response, "litellm")
            usage = captured.usage
            if streamed and _stream_reported_usage(kwargs.get("original_response")) is False:
                usage = estimated(usage)
            provider = captured.provider
            if provider in ("litellm", "unknown"):
                provider = _text(kwargs.get("custom_llm_provider")) or provider
            reported = _reported_cost(kwargs, response)
            self._tracker().record(
                usage,
                model=captured.model or _text(kwargs.get("model")),
                provider=provider,
                duration_ms=_duration_ms(start, end),
                provider_cost=reported if reported is not None else captured.provider_cost,
                context=dict(captured.price_context) or None,
            )
        except Exception:
            logger.debug("tokentrail could not record a LiteLLM call", exc_info=True)

    def _failed(self, kwargs: Any) -> None:
        try:
            if _instrumented() or not self._settle(_call_id(kwargs)):
                return
            from tokentrail.adapters.hooks import count_error

            count_error(self.tracker)
        except Exception:
            logger.debug("tokentrail could not count a failed LiteLLM call", exc_info=True)


def litellm_callback(tracker: Any = None) -> TokentrailLogger:
    """A LiteLLM callback recording every successful call on `tracker` (None: the process default).

    `litellm.callbacks = [tokentrail.litellm_callback()]`; see this module's documentation.
    """
    return TokentrailLogger(tracker)


_enable_lock = threading.Lock()
_enabled: TokentrailLogger | None = None


def enable(tracker: Any = None) -> TokentrailLogger:
    """Register tokentrail's callback in `litellm.callbacks` (once; a second call changes its tracker)."""
    global _enabled
    with _enable_lock:
        if _enabled is None:
            _enabled = TokentrailLogger(tracker)
        else:
            _enabled.tracker = tracker
        callbacks = _litellm.callbacks
        if not isinstance(callbacks, list):
            callbacks = _litellm.callbacks = list(callbacks or ())
        if _enabled not in callbacks:
            callbacks.append(_enabled)
        return _enabled


def disable() -> None:
    """Remove the callback `enable()` registered from LiteLLM's callback lists."""
    global _enabled
    with _enable_lock:
        callback, _enabled = _enabled, None
        if callback is not None:
            unregister(callback)


def unregister(callback: Any) -> None:
    """Take `callback` out of every list LiteLLM keeps callbacks in (it copies `litellm.callbacks`)."""
    for name in _LITELLM_LISTS:
        registered = getattr(_litellm, name, None)
        if isinstance(registered, list):
            while callback in registered:
                registered.remove(callback)


def is_enabled() -> bool:
    return _enabled is not None


# -- reading LiteLLM's call details --------------------------------------------------------------------


def _instrumented() -> bool:
    """Whether `tokentrail.instrument()` records LiteLLM calls, or recorded this one (LiteLLM runs a
    hook left over from an instrumented call in that call's context): then this callback stands down."""
    from tokentrail.adapters._instrument import covers
    from tokentrail.adapters._instrument_call import inside_tracked_call

    return covers("litellm") or inside_tracked_call()


def _details(kwargs: Any) -> dict[str, Any]:
    """LiteLLM's call details: its `model_call_details`, given as kwargs or on the logging object."""
    if not isinstance(kwargs, dict):
        return {}
    logging_obj = kwargs.get("litellm_logging_obj")
    details = getattr(logging_obj, "model_call_details", None)
    return {**details, **kwargs} if isinstance(details, dict) else kwargs


def _call_id(kwargs: Any) -> str | None:
    value = kwargs.get("litellm_call_id") if isinstance(kwargs, dict) else None
    return value if isinstance(value, str) and value else None


def _is_stream(kwargs: Any) -> bool:
    return isinstance(kwargs, dict) and bool(kwargs.get("stream"))


def _has_usage(response: Any) -> bool:
    return getattr(response, "usage", None) is not None


def _started(kwargs: Any) -> Any:
    return _details(kwargs).get("start_time")


def _complete_response(kwargs: dict[str, Any], response_obj: Any) -> Any:
    return (
        kwargs.get("complete_streaming_response")
        or kwargs.get("async_complete_streaming_response")
        or response_obj
    )


def _stream_reported_usage(stream: object) -> bool | None:
    """Whether any chunk of LiteLLM's stream carried the provider's usage (None: cannot tell). LiteLLM
    counts the usage itself exactly when none did."""
    chunks = getattr(stream, "chunks", None)
    if not isinstance(chunks, list):
        return None
    return any(getattr(chunk, "usage", None) is not None for chunk in chunks)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _duration_ms(start: object, end: object) -> float | None:
    if isinstance(start, datetime) and isinstance(end, datetime):
        elapsed: float = (end - start) / timedelta(milliseconds=1)
    elif isinstance(start, (int, float)) and isinstance(end, (int, float)):
        elapsed = (float(end) - float(start)) * 1000.0
    else:
        return None
    return elapsed if elapsed >= 0 else None


def _reported_cost(kwargs: dict[str, Any], response: Any) -> Decimal | None:
    """LiteLLM's `response_cost` for the call (standard logging payload first, else LiteLLM's
    `completion_cost` of the response), when usable."""
    logged = kwargs.get("standard_logging_object")
    candidates = (
        logged.get("response_cost") if isinstance(logged, dict) else None,
        kwargs.get("response_cost"),
    )
    for value in candidates:
        cost = _decimal(value)
        if cost is not None:
            return cost
    try:
        return _decimal(_litellm.completion_cost(completion_response=response))
    except Exception:
        return None


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        cost = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except ArithmeticError:
        return None
    return cost if cost.is_finite() and cost >= 0 else None
