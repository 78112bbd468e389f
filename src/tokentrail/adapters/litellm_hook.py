"""A LiteLLM custom callback: `litellm.callbacks = [tokentrail.litellm_callback()]`.

Every successful `litellm.completion` / `acompletion` (streamed or not) is read with
`tokentrail.capture(response, provider="litellm")` and recorded once on the tracker, with the
provider that served it (LiteLLM's `custom_llm_provider`), the call's duration (LiteLLM's start and
end times) and LiteLLM's own `response_cost` kept as the provider-reported cost. Streams are recorded
from LiteLLM's rebuilt complete response, after the stream is consumed; for exact counts on OpenAI
streams pass `stream_options={"include_usage": True}` (otherwise LiteLLM estimates the usage itself).
Failed calls are not recorded; they are counted under `error_counts["call_errors"]`.

LiteLLM runs success callbacks in a background thread (sync calls) or task (async calls), so a record
may appear shortly after the call returns; LiteLLM copies the caller's context into them, so the
active `tokentrail.scope()` applies.

`tokentrail.instrument()` covers `litellm.completion` / `acompletion` itself (recording in the call,
with the same fields); while it does, this callback stands down, so no call is recorded twice.

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

__all__ = ["TokentrailLogger", "litellm_callback"]

logger = logging.getLogger("tokentrail.adapters")

_CustomLogger: Any = importlib.import_module("litellm.integrations.custom_logger").CustomLogger

_REMEMBERED = 4096  # call ids kept to record each call once (sync and async hooks may both fire)


class TokentrailLogger(_CustomLogger):  # type: ignore[misc]
    """LiteLLM `CustomLogger` recording each successful call on a tokentrail tracker."""

    def __init__(self, tracker: Any = None) -> None:
        super().__init__()
        self.tracker = tracker
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    # -- LiteLLM hooks ---------------------------------------------------------------------------------

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record(kwargs, response_obj, start_time, end_time)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj, start_time, end_time)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._failed(kwargs)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._failed(kwargs)

    # -- recording -------------------------------------------------------------------------------------

    def _first_time(self, kwargs: Any) -> bool:
        call_id = kwargs.get("litellm_call_id") if isinstance(kwargs, dict) else None
        if not isinstance(call_id, str) or not call_id:
            return True
        with self._lock:
            if call_id in self._seen:
                return False
            self._seen[call_id] = None
            if len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
        return True

    def _tracker(self) -> Any:
        from tokentrail.adapters.hooks import resolve_tracker

        return resolve_tracker(self.tracker)

    def _record(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        if _instrumented():
            return
        try:
            if not isinstance(kwargs, dict):
                kwargs = {}
            response = response_obj
            if kwargs.get("stream"):
                response = (
                    kwargs.get("complete_streaming_response")
                    or kwargs.get("async_complete_streaming_response")
                    or response_obj
                )
            if not self._first_time(kwargs):
                return
            from tokentrail.adapters import capture

            captured = capture(response, "litellm")
            provider = captured.provider
            if provider in ("litellm", "unknown"):
                provider = _text(kwargs.get("custom_llm_provider")) or provider
            reported = _reported_cost(kwargs)
            self._tracker().record(
                captured.usage,
                model=captured.model or _text(kwargs.get("model")),
                provider=provider,
                duration_ms=_duration_ms(start_time, end_time),
                provider_cost=reported if reported is not None else captured.provider_cost,
                context=dict(captured.price_context) or None,
            )
        except Exception:
            logger.debug("tokentrail could not record a LiteLLM call", exc_info=True)

    def _failed(self, kwargs: Any) -> None:
        if _instrumented():
            return
        try:
            if self._first_time(kwargs if isinstance(kwargs, dict) else {}):
                from tokentrail.adapters.hooks import count_error

                count_error(self.tracker)
        except Exception:
            logger.debug("tokentrail could not count a failed LiteLLM call", exc_info=True)


def litellm_callback(tracker: Any = None) -> TokentrailLogger:
    """A LiteLLM callback recording every successful call on `tracker` (None: the process default).

    `litellm.callbacks = [tokentrail.litellm_callback()]`; see this module's documentation.
    """
    return TokentrailLogger(tracker)


def _instrumented() -> bool:
    """Whether `tokentrail.instrument()` records LiteLLM calls (then this callback stands down)."""
    from tokentrail.adapters._instrument import covers

    return covers("litellm")


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


def _reported_cost(kwargs: dict[str, Any]) -> Decimal | None:
    """LiteLLM's `response_cost` for the call (standard logging payload first), when usable."""
    logged = kwargs.get("standard_logging_object")
    candidates = (
        logged.get("response_cost") if isinstance(logged, dict) else None,
        kwargs.get("response_cost"),
    )
    for value in candidates:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            continue
        try:
            cost = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except ArithmeticError:
            continue
        if cost.is_finite() and cost >= 0:
            return cost
    return None
