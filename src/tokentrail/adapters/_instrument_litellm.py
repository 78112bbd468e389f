"""Patch table for `litellm`: the public `litellm.completion` and `litellm.acompletion` functions.

LiteLLM calls many providers through their own SDKs (OpenAI-compatible ones through the `openai`
SDK); while a tracked LiteLLM call runs, those inner SDK calls pass untracked, so the call is recorded
once, here, with LiteLLM's normalized usage, the provider that served it and LiteLLM's own
`response_cost` (kept as the provider-reported cost). A streamed call returns LiteLLM's own
`CustomStreamWrapper` object (its class swapped for a subclass whose iteration and closing feed the
tracking proxy), so `isinstance` checks, LiteLLM's Router included, still hold. LiteLLM's logging keeps a
reference to each stream, so a stream dropped without being consumed or closed is not collected and
records nothing: finish, `close()` / `aclose()` it, or read it in a `with` block.
`completion(..., acompletion=True)` passes through untracked.

The functions are replaced on the `litellm` module: code that ran `from litellm import completion`
before `instrument()` keeps the original function.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from typing import Any

from tokentrail.adapters._instrument_call import _StreamProxy
from tokentrail.adapters._instrument_target import Call, Request, Target, given

__all__ = ["CLIENT_MODULES", "ROOT", "TARGETS", "WRAP_PATHS"]

logger = logging.getLogger("tokentrail.adapters")


def _reports_stream_usage(model: str | None, kwargs: dict[str, Any]) -> bool:
    """Whether LiteLLM accepts `stream_options` for this model's provider (else it may refuse the call)."""
    if not model:
        return False
    try:
        import litellm

        provider = kwargs.get("custom_llm_provider")
        if not isinstance(provider, str):
            _, provider, _, _ = litellm.get_llm_provider(model=model, api_base=kwargs.get("api_base"))
        supported = litellm.get_supported_openai_params(model=model, custom_llm_provider=provider) or []
    except Exception:
        logger.debug("could not tell whether LiteLLM streams usage for %s", model, exc_info=True)
        return False
    return "stream_options" in supported


@dataclass(frozen=True)
class _CompletionTarget(Target):
    """`litellm.completion` / `litellm.acompletion`: OpenAI-shaped chat over any provider."""

    model_position: int | None = 0
    adapter: str | None = "litellm"

    def request(
        self, resource: Any, args: tuple[Any, ...], kwargs: dict[str, Any], settings: Any
    ) -> Request | None:
        if kwargs.get("acompletion") is True:
            return None
        request = super().request(resource, args, kwargs, settings)
        if (
            request is not None
            and request.streaming
            and settings.include_stream_usage
            and not given(kwargs.get("stream_options"))
            and _reports_stream_usage(request.model, kwargs)
        ):
            request.kwargs = {**kwargs, "stream_options": {"include_usage": True}}
        return request

    def deliver(self, call: Call, request: Request, response: Any, *, asynchronous: bool) -> Any:
        """A stream stays LiteLLM's own `CustomStreamWrapper` object (LiteLLM's Router and user code check
        `isinstance(response, CustomStreamWrapper)`); it is tracked in place."""
        if request.streaming:
            tracked = _track_in_place(call, response, asynchronous=asynchronous)
            if tracked is not None:
                return tracked
        return super().deliver(call, request, response, asynchronous=asynchronous)

    def is_content(self, event: object) -> bool:
        for choice in getattr(event, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            if getattr(delta, "content", None) or getattr(delta, "tool_calls", None):
                return True
        return False


# the stream whose own `__next__` / `__anext__` runs here: LiteLLM closes a stream itself when it reaches its
# end, from inside that method, and that close is the end of the stream, not the reader leaving it early
_READING: contextvars.ContextVar[object] = contextvars.ContextVar("tokentrail_litellm_reading", default=None)


class _AsItsClassReadsIt:
    """The stream read through its own class's methods: what the tracking proxy iterates and closes."""

    __slots__ = ("_cls", "_stream")

    def __init__(self, stream: Any, cls: Any) -> None:
        self._stream = stream
        self._cls = cls

    def __next__(self) -> Any:
        token = _READING.set(self._stream)
        try:
            return self._cls.__next__(self._stream)
        finally:
            _READING.reset(token)

    async def __anext__(self) -> Any:
        token = _READING.set(self._stream)
        try:
            return await self._cls.__anext__(self._stream)
        finally:
            _READING.reset(token)

    def close(self) -> Any:
        return self._cls.close(self._stream)

    async def aclose(self) -> Any:
        return await self._cls.aclose(self._stream)


_TRACKER = "_tokentrail_stream"
_tracked_classes: dict[type, type] = {}


def _tracked_class(cls: Any) -> type:
    """`cls` with iteration and closing going through the tracking proxy kept on the instance."""
    found = _tracked_classes.get(cls)
    if found is not None:
        return found

    def __next__(self: Any) -> Any:
        tracker = self.__dict__.get(_TRACKER)
        return cls.__next__(self) if tracker is None or not hasattr(tracker, "__next__") else next(tracker)

    async def __anext__(self: Any) -> Any:
        tracker = self.__dict__.get(_TRACKER)
        if tracker is None or not hasattr(tracker, "__anext__"):
            return await cls.__anext__(self)
        return await tracker.__anext__()

    def close(self: Any) -> Any:
        tracker = self.__dict__.get(_TRACKER)
        if tracker is None or not hasattr(tracker, "__next__") or _READING.get() is self:
            return cls.close(self)
        return tracker.close()

    async def aclose(self: Any) -> Any:
        tracker = self.__dict__.get(_TRACKER)
        if tracker is None or not hasattr(tracker, "__anext__") or _READING.get() is self:
            return await cls.aclose(self)
        return await tracker.aclose()

    namespace = {
        "__next__": __next__,
        "__anext__": __anext__,
        "close": close,
        "aclose": aclose,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    found = _tracked_classes[cls] = type(cls.__name__, (cls,), namespace)
    return found


def _track_in_place(call: Call, stream: Any, *, asynchronous: bool) -> Any:
    """`stream` itself, now recording through a tracking proxy; None when it cannot be tracked in place."""
    cls: Any = type(stream)
    names = ("__next__", "__anext__", "close", "aclose")
    if (
        not hasattr(stream, "__dict__")
        or cls in _tracked_classes.values()
        or not all(callable(getattr(cls, n, None)) for n in names)
    ):
        return None
    try:
        tracked = _tracked_class(cls)
        proxy = call.tracked_stream(_AsItsClassReadsIt(stream, cls), asynchronous=asynchronous)
        if not isinstance(proxy, _StreamProxy):
            return stream  # tracking could not start (already accounted for): the stream as it is
        stream.__dict__[_TRACKER] = proxy
        stream.__class__ = tracked
    except Exception:
        logger.debug("tokentrail could not track a LiteLLM stream in place", exc_info=True)
        return None
    return stream


TARGETS: tuple[Target, ...] = (
    _CompletionTarget("litellm", "litellm", "", "completion", "litellm"),
    _CompletionTarget("litellm", "litellm", "", "acompletion", "litellm"),
)
ROOT = "litellm"  # the package whose presence means the SDK is installed
CLIENT_MODULES: tuple[str, ...] = ()  # no client objects: `wrap()` does not apply
WRAP_PATHS: tuple[tuple[str, ...], ...] = ()
