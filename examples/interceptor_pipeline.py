"""Interceptor-style tracking in a middleware pipeline: each request passes through a chain of
interceptors; the tracking one records usage with `track_llm_call`, another adds attribution.

Runs offline: the real anthropic SDK talks to tokentrail's local MockLLMServer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic

import tokentrail as tt
from tokentrail.testing.mock_llm import MockLLMServer

Handler = Callable[[dict[str, Any]], Any]
Interceptor = Callable[[dict[str, Any], Handler], Any]


def attribution(request: dict[str, Any], call_next: Handler) -> Any:
    with tt.scope(user=request["user"], session=request["session"]):
        return call_next(request)


def make_tracking(tracker: tt.Tracker) -> Interceptor:
    def tracking(request: dict[str, Any], call_next: Handler) -> Any:
        with tt.track_llm_call(tracker=tracker, provider="anthropic") as call:
            return call.record(call_next(request))  # the response passes through unchanged

    return tracking


def pipeline(interceptors: list[Interceptor], endpoint: Handler) -> Handler:
    handler = endpoint
    for interceptor in reversed(interceptors):
        handler = (lambda i, nxt: lambda request: i(request, nxt))(interceptor, handler)
    return handler


def main() -> None:
    tracker = tt.Tracker()
    with MockLLMServer() as server:
        client = anthropic.Anthropic(base_url=server.url("anthropic"), api_key="test")

        def endpoint(request: dict[str, Any]) -> Any:
            return client.messages.create(
                model="claude-3-5-haiku-latest", max_tokens=256, messages=request["messages"]
            )

        handle = pipeline([attribution, make_tracking(tracker)], endpoint)
        server.queue(input=1000, output=200)
        handle({"user": "alice", "session": "s1", "messages": [{"role": "user", "content": "hi"}]})
        server.queue(input=500, output=100)
        handle({"user": "bob", "session": "s2", "messages": [{"role": "user", "content": "hi"}]})

    for row in tracker.summary(by=("user", "model")):
        print(
            f"user {row.group['user']} model {row.group['model']}: calls={row.calls} "
            f"tokens={row.total_tokens} cost=${row.cost}"
        )


if __name__ == "__main__":
    main()
