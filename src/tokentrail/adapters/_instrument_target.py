"""What instrumentation knows about one SDK method: the `Target` rows of each SDK's patch table.

A target names the method (`module.Class.attr`, or `module.attr` for a module-level function), the provider its calls are priced with, and how its
calls stream: by a `stream=True` argument ("flag"), always ("always": a method that returns a stream),
or never. Subclasses adjust what one SDK does differently (the Stainless SDKs' one `request` entry point,
boto3's single `_make_api_call` entry point).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Call", "Request", "Target", "first_int", "given"]


class Call(Protocol):
    """What a target hands the outcome of a request to: the tracked call (`_instrument_call.Call`)."""

    def finish_response(self, response: object) -> None: ...

    def tracked_stream(self, stream: Any, *, asynchronous: bool) -> Any: ...

    def failed(self) -> None: ...


_OUTPUT_LIMIT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "maxTokens", "num_predict")


@dataclass(slots=True)
class Request:
    """One intercepted call, as the target read it: what to send and how to track it."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    model: str | None
    streaming: bool
    part: str | None = None  # boto3: the response key holding the stream or body
    detail: Any = None  # what the target itself needs to know about this call


def given(value: object) -> bool:
    """False for None and the SDKs' "not given" sentinels (openai NotGiven/Omit, mistralai Unset)."""
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit", "Unset")


def first_int(*sources: object) -> int | None:
    """The first non-negative int under one of the usual output-limit names, in any of `sources`."""
    for source in sources:
        if source is None:
            continue
        for key in _OUTPUT_LIMIT_KEYS:
            value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
            if type(value) is int and value >= 0:
                return value
    return None


@dataclass(frozen=True)
class Target:
    """One public SDK method to track."""

    sdk: str  # the name `instrument(providers=...)` knows it by
    module: str
    cls: str  # "" for a module-level function
    attr: str
    provider: str
    streaming: str = "flag"  # "flag" | "always" | "never"
    model_position: int | None = None  # index of the model among positional arguments, when allowed
    adapter: str | None = None  # the `tokentrail.adapters.<adapter>` module that reads its responses

    @property
    def is_function(self) -> bool:
        """A module-level function (`litellm.completion`) rather than a method: `cls` is empty."""
        return not self.cls

    def provider_of(self, resource: Any, model: object = None) -> str:
        """The provider to price this client's calls with (of a call asking for `model`)."""
        return self.provider

    def request(
        self, resource: Any, args: tuple[Any, ...], kwargs: dict[str, Any], settings: Any
    ) -> Request | None:
        """How to make and track this call; None passes it through untracked."""
        model = kwargs.get("model")
        if model is None and self.model_position is not None and len(args) > self.model_position:
            model = args[self.model_position]
        streaming = kwargs.get("stream") is True if self.streaming == "flag" else self.streaming == "always"
        return Request(args, kwargs, model if isinstance(model, str) and model else None, streaming)

    def body(self, request: Request) -> Mapping[str, Any]:
        """The request's parameters by name (the prompt and output limit are read from them)."""
        return request.kwargs

    def reserves(self, request: Request) -> bool:
        """Whether the call is one to hold budget for (reading results billed already is not)."""
        return True

    def output_limit(self, request: Request) -> int | None:
        """The most output tokens the request allows (for budget reservations)."""
        body = self.body(request)
        return first_int(body, body.get("config"), body.get("options"))

    def deliver(self, call: Call, request: Request, response: Any, *, asynchronous: bool) -> Any:
        """Record a plain response, or hand back a stream that records itself; returns what the caller gets."""
        if request.streaming:
            return call.tracked_stream(response, asynchronous=asynchronous)
        call.finish_response(response)
        return response

    def is_content(self, event: object) -> bool:
        """Whether a stream event carries generated content (the first one marks time to first token)."""
        return True
