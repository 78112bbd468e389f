"""LlamaIndex: each LLM call recorded exactly once and attributed to the agent that made it — an
`AgentWorkflow` handing off from one `FunctionAgent` to another that calls a tool, streamed and not, and
plain `llm.chat` / `stream_chat` / `complete` calls — under `instrument()`, the integration, or both.
The real `llama_index.llms.openai.OpenAI` drives a real openai client against the mock server.

These run in their own environment (`make test-frameworks`: llama-index-llms-openai pins openai<3).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import tokentrail as tt
from tokentrail.testing.mock_llm import MockLLMServer, MockResponse
from tokentrail.tracker import Tracker

from .conftest import LAYERS, Matrix, require_framework

require_framework("llama_index.core")
require_framework("llama_index.llms.openai")

from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events import BaseEvent  # noqa: E402
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent  # noqa: E402
from llama_index.core.llms import ChatMessage  # noqa: E402
from llama_index.llms.openai import OpenAI  # noqa: E402

from tokentrail.integrations import llama_index as tt_llama_index  # noqa: E402

FRAMEWORK = "llama-index"
MODEL = "gpt-4o-mini"
STREAM_USAGE = {"stream_options": {"include_usage": True}}


class _FrameworkUsage(BaseEventHandler):
    """The framework's own numbers: LlamaIndex's `prompt_tokens` / `completion_tokens` of each call."""

    calls: list[tuple[int, int]]

    @classmethod
    def class_name(cls) -> str:
        return "FrameworkUsage"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)) and event.response is not None:
            counts = event.response.additional_kwargs
            self.calls.append((counts["prompt_tokens"], counts["completion_tokens"]))

    def totals(self) -> tuple[int, int]:
        return sum(c[0] for c in self.calls), sum(c[1] for c in self.calls)


@pytest.fixture
def framework_usage() -> Iterator[_FrameworkUsage]:
    handler = _FrameworkUsage(calls=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    try:
        yield handler
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not handler]


@pytest.fixture(autouse=True)
def integration_off() -> Iterator[None]:
    tt_llama_index.disable()
    yield
    tt_llama_index.disable()


def _layer(layer: str, tracker: Tracker) -> None:
    """Turn on exactly the recording layers the cell names."""
    if layer in ("instrument", "both"):
        tt.instrument(tracker)
    if layer in ("integration", "both"):
        tt_llama_index.enable(tracker)
    else:
        tt_llama_index.disable()  # in case instrument() enabled it on its own


def _llm(server: MockLLMServer, **extra: Any) -> OpenAI:
    return OpenAI(model=MODEL, api_base=server.url("openai"), api_key="test", **extra)


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def _workflow(server: MockLLMServer, streaming: bool) -> AgentWorkflow:
    """A triage agent that hands off to a calculator agent with an `add` tool."""
    llm = _llm(server, additional_kwargs=STREAM_USAGE if streaming else {})
    triage = FunctionAgent(
        name="triage",
        description="Routes questions.",
        system_prompt="Route math to the calculator.",
        llm=llm,
        tools=[],
        can_handoff_to=["calculator"],
        streaming=streaming,
    )
    calculator = FunctionAgent(
        name="calculator",
        description="Does arithmetic.",
        system_prompt="Use the add tool.",
        llm=llm,
        tools=[add],
        streaming=streaming,
    )
    return AgentWorkflow(agents=[triage, calculator], root_agent="triage")


def _queue_handoff_then_tool(server: MockLLMServer) -> None:
    server.queue(
        MockResponse(
            tool_calls=[{"name": "handoff", "arguments": {"to_agent": "calculator", "reason": "math"}}]
        ),
        MockResponse(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}]),
        MockResponse(text="5"),
    )


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", ["workflow", "workflow-streamed"])
def test_agent_workflow_calls_are_recorded_once_under_the_agent_that_made_them(
    server: MockLLMServer,
    tracker: Tracker,
    matrix: Matrix,
    framework_usage: _FrameworkUsage,
    mode: str,
    layer: str,
) -> None:
    streaming = mode.endswith("streamed")
    workflow = _workflow(server, streaming)
    _queue_handoff_then_tool(server)
    _layer(layer, tracker)
    before = len(server.requests)

    async def run() -> Any:
        return await workflow.run(user_msg="What is 2 + 3?")

    result = asyncio.run(run())

    assert "5" in str(result)
    expected = ["triage", "calculator", "calculator"] if layer != "instrument" else [None, None, None]
    matrix.check(
        FRAMEWORK,
        f"async {mode}",
        layer,
        made=len(server.requests) - before,
        records=tracker.history(),
        expected_tokens=framework_usage.totals(),
        expected_agents=expected,
    )


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", ["chat", "stream_chat", "complete", "achat", "astream_chat"])
def test_plain_llm_calls_are_recorded_once_in_the_callers_scope(
    server: MockLLMServer,
    tracker: Tracker,
    matrix: Matrix,
    framework_usage: _FrameworkUsage,
    mode: str,
    layer: str,
) -> None:
    llm = _llm(server, additional_kwargs=STREAM_USAGE if "stream" in mode else {})
    messages = [ChatMessage(role="user", content="How are tokens counted?")]
    _layer(layer, tracker)
    before = len(server.requests)

    with tt.scope(agent="caller"):
        text = _call(llm, mode, messages)

    assert text
    matrix.check(
        FRAMEWORK,
        f"{'async' if mode.startswith('a') else 'sync'} {mode}",
        layer,
        made=len(server.requests) - before,
        records=tracker.history(),
        expected_tokens=framework_usage.totals(),
        expected_agents=["caller"],
    )


def _call(llm: OpenAI, mode: str, messages: list[ChatMessage]) -> str:
    """One LLM call the way a user writes it, returning its text."""
    if mode == "chat":
        return str(llm.chat(messages).message.content)
    if mode == "stream_chat":
        return "".join(chunk.delta or "" for chunk in llm.stream_chat(messages))
    if mode == "complete":
        return llm.complete("How are tokens counted?").text

    async def call() -> str:
        if mode == "achat":
            return str((await llm.achat(messages)).message.content)
        return "".join([chunk.delta or "" async for chunk in await llm.astream_chat(messages)])

    return asyncio.run(call())


def test_a_call_made_inside_a_tool_carries_the_tool_and_the_agent(
    server: MockLLMServer, tracker: Tracker, framework_usage: _FrameworkUsage
) -> None:
    inner = _llm(server)

    async def summarize(text: str) -> str:
        """Summarize a text."""
        return str((await inner.achat([ChatMessage(role="user", content=text)])).message.content)

    agent = FunctionAgent(
        name="writer", description="Writes.", llm=_llm(server), tools=[summarize], streaming=False
    )
    server.queue(
        MockResponse(tool_calls=[{"name": "summarize", "arguments": {"text": "a long text"}}]),
        MockResponse(text="a summary"),  # the call inside the tool
        MockResponse(text="done"),
    )
    tt.instrument(tracker)
    tt_llama_index.enable(tracker)

    async def run() -> Any:
        return await agent.run(user_msg="Summarize it.")

    asyncio.run(run())

    records = tracker.history()
    assert [(r.attribution.agent, r.attribution.tool) for r in records] == [
        ("writer", None),
        ("writer", "summarize"),
        ("writer", None),
    ]
    assert sum(r.usage.input_tokens for r in records) == framework_usage.totals()[0]


def test_a_failed_call_is_not_recorded_and_leaves_no_claim_or_scope_behind(
    server: MockLLMServer, tracker: Tracker
) -> None:
    from tokentrail._claims import current_claim
    from tokentrail.scope import current_scope

    tt_llama_index.enable(tracker)
    server.queue(MockResponse(status=400))
    llm = _llm(server, max_retries=0)

    with pytest.raises(Exception, match="400"):
        llm.chat([ChatMessage(role="user", content="hi")])

    assert tracker.history() == []
    assert tracker.error_counts.get("call_errors") == 1
    assert current_claim() is None
    assert current_scope().agent is None


def test_enable_is_idempotent_and_disable_removes_the_handlers(
    server: MockLLMServer, tracker: Tracker
) -> None:
    root = get_dispatcher()
    before = (len(root.span_handlers), len(root.event_handlers))
    tt_llama_index.enable(tracker)
    tt_llama_index.enable(tracker)
    assert (len(root.span_handlers), len(root.event_handlers)) == (before[0] + 1, before[1] + 1)
    tt_llama_index.disable()
    assert (len(root.span_handlers), len(root.event_handlers)) == before

    _llm(server).chat([ChatMessage(role="user", content="hi")])
    assert tracker.history() == []
