"""The openai and anthropic clients the instrumentation tests point at the local mock server."""

from __future__ import annotations

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
