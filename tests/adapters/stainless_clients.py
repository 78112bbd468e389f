"""The openai and anthropic clients the instrumentation tests point at the local mock server."""

from __future__ import annotations

import inspect
from typing import Any

import anthropic
import openai

from tokentrail.testing.mock_llm import MockLLMServer

GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
MESSAGES = [{"role": "user", "content": "How are tokens counted when a prompt is cached?"}]


def oai(server: MockLLMServer, cls: Any = openai.OpenAI) -> Any:
    return cls(base_url=server.url("openai"), api_key="test", max_retries=0)


def ant(server: MockLLMServer, cls: Any = anthropic.Anthropic) -> Any:
    return cls(base_url=server.url("anthropic"), api_key="test", max_retries=0)


def fetch(resource: Any, method: str, mode: str, *args: Any, **kwargs: Any) -> Any:
    """Call `resource.<method>` the way `mode` says ("plain", "with_raw_response",
    "with_streaming_response") and return what the caller reads (sync)."""
    if mode == "plain":
        return getattr(resource, method)(*args, **kwargs)
    if mode == "with_raw_response":
        return getattr(resource.with_raw_response, method)(*args, **kwargs).parse()
    with getattr(resource.with_streaming_response, method)(*args, **kwargs) as response:
        return response.parse()


async def afetch(resource: Any, method: str, mode: str, *args: Any, **kwargs: Any) -> Any:
    """`fetch` for an async client."""
    if mode == "plain":
        return await getattr(resource, method)(*args, **kwargs)
    if mode == "with_raw_response":
        parsed = (await getattr(resource.with_raw_response, method)(*args, **kwargs)).parse()
        return await parsed if inspect.isawaitable(parsed) else parsed  # openai's raw `parse` is sync
    async with getattr(resource.with_streaming_response, method)(*args, **kwargs) as response:
        return await response.parse()


def calls(server: MockLLMServer, method: str, path: str) -> int:
    """How many requests `method path` reached the mock server."""
    return sum(1 for r in server.requests if r["method"] == method and r["path"] == path)
