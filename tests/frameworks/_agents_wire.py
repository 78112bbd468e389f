"""Tool-call answers in the OpenAI wire formats (Responses and Chat Completions, plain and streamed),
served verbatim by the mock server to make an Agents SDK run call a tool or hand off.

Each answer carries its own usage; the server counts the request like any other.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tokentrail.testing.mock_llm import MockResponse

MODEL = "gpt-4o-mini"


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def tool_call(
    name: str, arguments: dict[str, Any], usage: tuple[int, int], *, api: str, stream: bool
) -> MockResponse:
    """The next answer of `api` ("responses" or "chat"): one call of the tool `name`."""
    args = json.dumps(arguments)
    if api == "responses":
        response = _responses_body(name, args, usage)
        if stream:
            return MockResponse(route="openai.responses", events=_responses_events(response))
        return MockResponse(route="openai.responses", body=response)
    if stream:
        return MockResponse(route="openai.chat", events=_chat_chunks(name, args, usage))
    return MockResponse(route="openai.chat", body=_chat_body(name, args, usage))


def _responses_body(name: str, args: str, usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": _id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": MODEL,
        "output": [
            {
                "type": "function_call",
                "id": _id("fc_"),
                "call_id": _id("call_"),
                "name": name,
                "arguments": args,
                "status": "completed",
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": usage[0],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage[1],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": sum(usage),
        },
    }


def _responses_events(response: dict[str, Any]) -> list[Any]:
    item = response["output"][0]
    events: list[dict[str, Any]] = [
        {
            "type": "response.created",
            "response": {**response, "status": "in_progress", "output": [], "usage": None},
        },
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "arguments": "", "status": "in_progress"},
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": item["id"],
            "output_index": 0,
            "delta": item["arguments"],
        },
        {
            "type": "response.function_call_arguments.done",
            "item_id": item["id"],
            "output_index": 0,
            "arguments": item["arguments"],
        },
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": response},
    ]
    return [
        f"event: {event['type']}\ndata: {json.dumps({**event, 'sequence_number': n})}\n\n"
        for n, event in enumerate(events)
    ]


def _chat_usage(usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
        "total_tokens": sum(usage),
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _chat_body(name: str, args: str, usage: tuple[int, int]) -> dict[str, Any]:
    call = {"id": _id("call_"), "type": "function", "function": {"name": name, "arguments": args}}
    return {
        "id": _id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": _chat_usage(usage),
    }


def _chat_chunks(name: str, args: str, usage: tuple[int, int]) -> list[Any]:
    base = {
        "id": _id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
    }
    call = {"index": 0, "id": _id("call_"), "type": "function", "function": {"name": name, "arguments": ""}}
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"tool_calls": [{"index": 0, "function": {"arguments": args}}]},
    ]
    chunks: list[Any] = [
        {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    chunks.append({**base, "choices": [], "usage": _chat_usage(usage)})
    chunks.append("data: [DONE]\n\n")
    return chunks
