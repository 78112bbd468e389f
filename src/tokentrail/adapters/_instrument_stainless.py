"""Instrumentation of the Stainless-generated SDKs (`openai`, `anthropic`) at their one HTTP entry point.

Every API method of these SDKs — plain, `with_raw_response`, `with_streaming_response`, `.parse()`, the
`.stream()` helpers, the `beta.*` namespaces, sync or async — ends in `SyncAPIClient.request` /
`AsyncAPIClient.request` with the request's options (HTTP method, path, JSON body). Tracking that one
method sees every call once, whichever way it was made, and a method the SDK adds later is covered as
soon as its path is in the endpoint table; everything else (files, batches, model lists…) passes
straight through. What the caller gets back is unchanged:

- a parsed response object: the SDK's own (read on the capture worker);
- an SDK `Stream` / `AsyncStream`: handed back in a thin proxy that sees each event (`_instrument_call`);
- a raw response (`with_raw_response`): the SDK's own object; its JSON body (already read by the SDK) is
  decoded on the capture worker, and a streamed body is tapped as the caller reads it (`_body_tap`);
- a streaming response (`with_streaming_response`): the SDK's own object, its body tapped as it is read.

Message Batches results and OpenAI Batch output files (`Endpoint.items`) are JSON-lines listings: each
succeeded result is its own record, made as the caller reads it, once per response id however often the
results are fetched; a downloaded file that is no Batch output records nothing.

Server-side runs (`Endpoint.server_side`: eval runs, dreams) are recorded when seen finished, once per run.
Hosted agent sessions are recorded per completed turn or model request, from the turns and events the
caller reads (`Endpoint.event_items`: a stream's events tapped as they are read), once per turn or event.

A Responses API response can be fetched again (`responses.retrieve`, a resumed stream): it is recorded
once per response id, and a background response when it is seen finished.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tokentrail.adapters._base import Captured
from tokentrail.adapters._instrument_target import Call, Request, Target, given

__all__ = ["Endpoint", "StainlessTarget", "recorded_once"]

RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"
_PROVIDERS: dict[type, str] = {}  # client class -> the provider its calls are priced with
# SDK -> (the base URL object last seen, the readers that named it, its provider): most programs use one URL
_AT_URL: dict[str, tuple[object, object, str]] = {}


def _any_event(event: object) -> bool:
    return True


@dataclass(frozen=True)
class Endpoint:
    """One billable API path: what reads its responses and how its streams behave."""

    name: str  # the API's name for it ("chat.completions"), shown by `tokentrail doctor`
    adapter: str  # `tokentrail.adapters.<module>` (its `extract`) or "<module>:<function>"
    is_content: Callable[[object], bool] = _any_event  # a stream event carrying content (time to first token)
    stream_usage_option: bool = False  # chat completions report streamed usage only when asked
    once_per_response: bool = False  # Responses: one record per response id, background ones when finished
    stream: str | None = None  # "module:Class" reading its stream events, where format detection cannot
    audio: bool = False  # the body is audio bytes, or server-sent events with usage when stream_format="sse"
    # a listing of independently billed items (Message Batches results, JSON lines): `adapter` reads each
    # item as the caller iterates (a `Captured`, or None when the item is not billed), one record per item
    items: bool = False
    # a listing that may be no listing of billed items (a file's content): read on only when its first line
    # passes this byte test, so other files are not decoded line by line
    item_sniff: Callable[[bytes], bool] | None = None
    # a run the API does server-side (an eval run, a dream): its responses are recorded only once the run
    # is seen finished, once per run id however often it is fetched; no budget is held for the request
    server_side: bool = False
    # the reader is handed `Scoped(request path, body)`: payloads that do not name what they belong to
    scoped: bool = False
    # a server-sent event stream whose events holding one of these byte strings are items, each read by
    # `adapter` as the caller reads the stream (whichever way: plain, raw, streaming response)
    event_items: tuple[bytes, ...] = ()


class _Detail:
    """What `deliver` needs to know about one request (a plain slotted class: built on every call)."""

    __slots__ = ("body", "endpoint", "path", "raw")

    def __init__(self, endpoint: Endpoint, raw: str | None, body: Mapping[str, Any], path: str) -> None:
        self.endpoint = endpoint
        self.raw = raw  # None, "true" (with_raw_response) or "stream" (with_streaming_response)
        self.body = body
        self.path = path  # as the SDK gave it


@dataclass(frozen=True)
class StainlessTarget(Target):
    """`SyncAPIClient.request` / `AsyncAPIClient.request` of one Stainless SDK, tracking its billable paths.

    `endpoints` maps (HTTP method, path) to its `Endpoint`; a `{…}` segment in a path stands for one id
    (`/responses/{id}` matches `/responses/resp_123`, not `/responses/resp_123/input_items`). A query
    string (`?beta=true`) is not part of the path.
    """

    endpoints: Mapping[tuple[str, str], Endpoint] = field(default_factory=dict)
    provider_names: Mapping[str, str] = field(default_factory=dict)  # client class name part -> provider
    templates: tuple[tuple[str, re.Pattern[str], Endpoint], ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        templates = tuple(
            (method, re.compile("^" + re.sub(r"\\{[^/]*\\}", "[^/]+", re.escape(path)) + "$"), endpoint)
            for (method, path), endpoint in self.endpoints.items()
            if "{" in path
        )
        object.__setattr__(self, "templates", templates)

    def provider_of(self, resource: Any, model: object = None) -> str:
        """The provider a client's calls are priced with: the one its class names (`AzureOpenAI`,
        `AnthropicBedrock`), else the one whose API its base URL is in the catalog (`api_pattern`: an openai
        client on `https://api.deepseek.com` calls DeepSeek; on Hugging Face's router, the router the
        requested `model` names, "org/model:router"), else the SDK's own."""
        kind = type(resource)
        found = _PROVIDERS.get(kind)
        if found is None:
            found = next(
                (p for part, p in self.provider_names.items() if part in kind.__name__), self.provider
            )
            _PROVIDERS[kind] = found
        if found != self.provider:
            return found
        url = getattr(resource, "_base_url", None)
        if url is None:
            return found
        from tokentrail.adapters._mapped import mapped_readers

        readers = mapped_readers()
        last = _AT_URL.get(self.provider)
        if last is not None and last[0] is url and last[1] is readers:
            named = last[2]
        else:
            named = readers.provider_at(str(url)) or found
            _AT_URL[self.provider] = (url, readers, named)  # one tuple: read whole by any thread
        if named == "huggingface":  # the router the requested model names ("org/model:router")
            return readers.router_of(named, model) or named
        return named

    def endpoint(self, method: str, path: str) -> Endpoint | None:
        """The endpoint a request to `path` reaches, or None when the path is not billable."""
        found = self.endpoints.get((method, path))
        if found is not None:
            return found
        path = path.partition("?")[0]
        found = self.endpoints.get((method, path))
        if found is None and "://" in path:  # an absolute URL the API gave (a batch's `results_url`)
            path = urlsplit(path).path
            found = self.endpoints.get((method, path))
        if found is None and path.count("/") > 1:
            for verb, pattern, endpoint in self.templates:
                if verb == method and pattern.match(path):
                    return endpoint
        return found

    def request(
        self, resource: Any, args: tuple[Any, ...], kwargs: dict[str, Any], settings: Any
    ) -> Request | None:
        options: Any = args[1] if len(args) > 1 else kwargs["options"]
        method = options.method
        endpoint = self.endpoints.get((method, options.url)) or self.endpoint(
            str(method).lower(), options.url
        )
        if endpoint is None:
            return None
        body = options.json_data
        if type(body) is not dict:
            body = body if isinstance(body, Mapping) else {}
        streaming = kwargs.get("stream") is True
        if (
            endpoint.stream_usage_option
            and streaming
            and settings.include_stream_usage
            and not given(body.get("stream_options"))
        ):
            body = {**body, "stream_options": {"include_usage": True}}
            options = options.model_copy(update={"json_data": body})
            if len(args) > 1:
                args = (args[0], options, *args[2:])
            else:
                kwargs = {**kwargs, "options": options}
        model = body.get("model")
        request = Request(args, kwargs, model if isinstance(model, str) and model else None, streaming)
        request.detail = _Detail(endpoint, _raw_mode(options.headers), body, str(options.url))
        return request

    def body(self, request: Request) -> Mapping[str, Any]:
        detail: _Detail = request.detail
        return detail.body

    def reserves(self, request: Request) -> bool:
        detail: _Detail = request.detail
        endpoint = detail.endpoint
        # batch results were billed when the batch ran; a server-side run is billed as it runs
        return not (endpoint.items or endpoint.server_side)

    def deliver(self, call: Call, request: Request, response: Any, *, asynchronous: bool) -> Any:
        detail: _Detail = request.detail
        endpoint = detail.endpoint
        tracked: Any = call
        tracked.adapter = endpoint.adapter
        tracked.is_content = endpoint.is_content
        tracked.stream_reader = endpoint.stream
        if endpoint.once_per_response or endpoint.server_side:
            # a retrieve has no body: like a background create, an unfinished response waits to be seen finished
            waits = endpoint.server_side or detail.body.get("background") is True or not detail.body
            tracked.once = _Once(background=waits)
        if endpoint.scoped:
            tracked.scope = urlsplit(detail.path).path
        if endpoint.event_items and request.streaming:
            return self._deliver_events(tracked, detail, response, asynchronous)
        if endpoint.audio:
            return self._deliver_audio(tracked, detail, response, asynchronous)
        if endpoint.items:
            return self._deliver_items(tracked, detail, response, asynchronous)
        if detail.raw is None:
            if request.streaming:
                return call.tracked_stream(response, asynchronous=asynchronous)
            call.finish_response(response)
            return response
        http = getattr(response, "http_response", None)
        if http is None:  # not the SDK's raw response wrapper after all
            return super().deliver(call, request, response, asynchronous=asynchronous)
        content = getattr(http, "_content", None)
        if not request.streaming and isinstance(content, bytes):
            tracked.finish_body(content)  # with_raw_response: the SDK read the body already
            return response
        from tokentrail.adapters._body_tap import tap_body

        tap_body(tracked, http, events=request.streaming, asynchronous=asynchronous)
        return response

    def _deliver_items(self, call: Any, detail: _Detail, response: Any, asynchronous: bool) -> Any:
        """A listing of billed items: a body read already (a file's content) read on the capture worker, its
        decoder proxied, or (raw, streaming response) its body tapped as the caller reads it."""
        sniff = detail.endpoint.item_sniff
        http = getattr(response, "http_response", None) or getattr(response, "response", None)
        content = getattr(http, "_content", None)
        if isinstance(content, bytes):
            call.finish_items_body(content, sniff)
            return response
        if detail.raw is None and sniff is None:
            return call.tracked_items(response, asynchronous=asynchronous)
        if http is None:
            call.discard()
            return response
        from tokentrail.adapters._body_tap import tap_items

        tap_items(call, http, asynchronous=asynchronous, sniff=sniff)
        return response

    def _deliver_events(self, call: Any, detail: _Detail, response: Any, asynchronous: bool) -> Any:
        """A stream of events some of which are billed items: its body tapped as it is read, whether the
        caller iterates the SDK's stream or reads the raw or streaming response."""
        http = getattr(response, "http_response", None) or getattr(response, "response", None)
        if http is None:
            call.discard()
            return response
        from tokentrail.adapters._body_tap import tap_events

        tap_events(call, http, asynchronous=asynchronous, markers=detail.endpoint.event_items)
        return response

    def _deliver_audio(self, call: Any, detail: _Detail, response: Any, asynchronous: bool) -> Any:
        """Speech: plain audio reports no usage; as server-sent events its last event does."""
        if detail.body.get("stream_format") != "sse":
            call.finish_unread("speech returns audio bytes: usage is reported only with stream_format='sse'")
            return response
        http = getattr(response, "http_response", None) or getattr(response, "response", None)
        content = getattr(http, "_content", None)
        if isinstance(content, bytes):  # read already (a plain call, with_raw_response)
            call.finish_response(content)
        elif http is not None:  # with_streaming_response: the events as the caller reads them
            from tokentrail.adapters._body_tap import tap_body

            tap_body(call, http, events=True, asynchronous=asynchronous)
        else:
            call.finish_unread("the speech response could not be read")
        return response

    def is_content(self, event: object) -> bool:
        return True


def _raw_mode(headers: object) -> str | None:
    """What the caller asked for: a raw response ("true"), a streaming response ("stream") or neither."""
    if not headers:  # {} or the SDKs' falsy NotGiven: the common case
        return None
    if type(headers) is dict:
        found = headers.get(RAW_RESPONSE_HEADER)  # the SDKs' own spelling
        if found is not None:
            return str(found)
    elif not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == "x-stainless-raw-response":
            return str(value)
    return None


# -- one record per Responses API response id ----------------------------------------------------------------

_REMEMBERED = 65_536
_recorded: OrderedDict[str, None] = OrderedDict()
_recorded_lock = threading.Lock()


def recorded_once(response_id: str) -> bool:
    """True the first time `response_id` is recorded in this process (recent ids are remembered)."""
    with _recorded_lock:
        if response_id in _recorded:
            _recorded.move_to_end(response_id)
            return False
        _recorded[response_id] = None
        if len(_recorded) > _REMEMBERED:
            _recorded.popitem(last=False)
        return True


class _Once:
    """Whether a Responses API capture is recorded: once per id; an unfinished background one not yet."""

    __slots__ = ("background",)

    def __init__(self, *, background: bool) -> None:
        self.background = background

    def __call__(self, captured: Captured) -> bool:
        if not captured.finished and self.background:
            return False  # still running, or its stream was cut short: recorded when seen finished
        response_id = captured.response_id
        return response_id is None or recorded_once(response_id)


def after_wrap(client: Any, rewrap: Callable[[Any], Any]) -> None:
    """Keep copies of a wrapped client wrapped: `client.with_options(...)` / `copy()` make a new client."""
    copy = getattr(type(client), "copy", None)
    if copy is None or "copy" in getattr(client, "__dict__", {}):
        return

    def tracked_copy(*args: Any, **kwargs: Any) -> Any:
        return rewrap(copy(client, *args, **kwargs))

    client.copy = tracked_copy
    client.with_options = tracked_copy
