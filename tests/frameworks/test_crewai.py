"""CrewAI: each LLM call of a crew recorded exactly once and attributed to the agent (its role) that made
it — a researcher that calls a tool, then a writer — with `Crew.kickoff` and `akickoff`, streamed and
not, under `instrument()`, the integration, or both. CrewAI's own `LLM(model="gpt-4o-mini", base_url=…)`
(its native OpenAI provider, on the openai SDK's `with_raw_response`) runs against the mock server.

These run in their own environment (`make test-frameworks`: crewai pins openai<3).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

import tokentrail as tt
from tokentrail.testing.mock_llm import MockLLMServer, MockResponse
from tokentrail.tracker import Tracker

from .conftest import LAYERS, Matrix, require_framework

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")  # no telemetry or trace upload attempts
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")


require_framework("crewai")

from crewai import LLM, Agent, Crew, Process, Task  # noqa: E402
from crewai.events.event_bus import crewai_event_bus  # noqa: E402
from crewai.tools import tool  # noqa: E402

from tokentrail.integrations import crewai as tt_crewai  # noqa: E402

FRAMEWORK = "crewai"
MODEL = "gpt-4o-mini"


@tool("lookup")
def lookup(topic: str) -> str:
    """Look a topic up in the notes."""
    return f"notes on {topic}: tokens are counted exactly"


@pytest.fixture(autouse=True)
def integration_off() -> Iterator[None]:
    tt_crewai.disable()
    yield
    tt_crewai.disable()
    crewai_event_bus.flush()


def _layer(layer: str, tracker: Tracker) -> None:
    """Turn on exactly the recording layers the cell names."""
    if layer in ("instrument", "both"):
        tt.instrument(tracker)
    if layer in ("integration", "both"):
        tt_crewai.enable(tracker)
    else:
        tt_crewai.disable()  # in case instrument() enabled it on its own


def _crew(server: MockLLMServer, stream: bool) -> Crew:
    """A researcher with a tool, then a writer; one LLM each (CrewAI counts a shared LLM once per agent)."""

    def llm() -> LLM:
        return LLM(model=MODEL, base_url=server.url("openai"), api_key="test", stream=stream)

    researcher = Agent(role="researcher", goal="Find facts.", backstory="Careful.", llm=llm(), tools=[lookup])
    writer = Agent(role="writer", goal="Write clearly.", backstory="Concise.", llm=llm())
    research = Task(
        name="research", description="Research tokens.", expected_output="notes", agent=researcher
    )
    write = Task(name="write", description="Write about tokens.", expected_output="a paragraph", agent=writer)
    return Crew(agents=[researcher, writer], tasks=[research, write], process=Process.sequential)


def _queue(server: MockLLMServer) -> None:
    server.queue(
        MockResponse(tool_calls=[{"name": "lookup", "arguments": {"topic": "tokens"}}]),
        MockResponse(text="Final Answer: tokens are counted exactly"),
        MockResponse(text="Final Answer: a paragraph on tokens"),
    )


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", ["kickoff", "kickoff streamed", "akickoff", "akickoff streamed"])
def test_crew_calls_are_recorded_once_under_the_agent_role_that_made_them(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, mode: str, layer: str
) -> None:
    crew = _crew(server, stream=mode.endswith("streamed"))
    _queue(server)
    _layer(layer, tracker)
    before = len(server.requests)

    output = asyncio.run(crew.akickoff()) if mode.startswith("akickoff") else crew.kickoff()

    assert "paragraph" in output.raw
    usage = crew.usage_metrics
    assert usage is not None
    expected = ["researcher", "researcher", "writer"] if layer != "instrument" else [None, None, None]
    cell = matrix.check(
        FRAMEWORK,
        f"{'async' if mode.startswith('a') else 'sync'} {mode}",
        layer,
        made=len(server.requests) - before,
        records=tracker.history(),
        expected_tokens=(usage.prompt_tokens, usage.completion_tokens),
        expected_agents=expected,
    )
    assert cell.recorded == usage.successful_requests


def test_records_carry_the_task_as_a_tag_and_a_call_inside_a_tool_carries_the_tool(
    server: MockLLMServer, tracker: Tracker
) -> None:
    import openai

    inner = openai.OpenAI(base_url=server.url("openai"), api_key="test")

    @tool("summarize")
    def summarize(text: str) -> str:
        """Summarize a text with another model call."""
        reply = inner.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
        return str(reply.choices[0].message.content)

    agent = Agent(
        role="editor",
        goal="Summarize.",
        backstory="Brief.",
        llm=LLM(model=MODEL, base_url=server.url("openai"), api_key="test"),
        tools=[summarize],
    )
    task = Task(name="edit", description="Summarize the text.", expected_output="a summary", agent=agent)
    server.queue(
        MockResponse(tool_calls=[{"name": "summarize", "arguments": {"text": "a long text"}}]),
        MockResponse(text="a summary"),  # the call inside the tool
        MockResponse(text="Final Answer: a summary"),
    )
    tt.instrument(tracker)
    tt_crewai.enable(tracker)

    Crew(agents=[agent], tasks=[task]).kickoff()

    records = tracker.history()
    assert [(r.attribution.agent, r.attribution.tool) for r in records] == [
        ("editor", None),
        ("editor", "summarize"),
        ("editor", None),
    ]
    assert all("task:edit" in r.attribution.tags for r in records)


def test_after_a_kickoff_no_claim_or_scope_is_left_in_the_callers_context(
    server: MockLLMServer, tracker: Tracker
) -> None:
    from tokentrail._claims import current_claim
    from tokentrail.scope import current_scope

    tt_crewai.enable(tracker)
    _queue(server)

    _crew(server, stream=False).kickoff()

    assert current_claim() is None
    assert current_scope().agent is None
    assert len(tracker.history()) == 3


def test_a_crew_that_ran_before_enable_is_tracked_once_and_attributed_after_it(
    server: MockLLMServer, tracker: Tracker
) -> None:
    crew = _crew(server, stream=False)
    _queue(server)
    crew.kickoff()  # builds and keeps each agent's executor, with CrewAI's copy of the hooks then
    _queue(server)
    tt.instrument(tracker)
    tt_crewai.enable(tracker)

    crew.kickoff()

    assert [r.attribution.agent for r in tracker.history()] == ["researcher", "researcher", "writer"]


def test_enable_is_idempotent_and_disable_stops_recording(server: MockLLMServer, tracker: Tracker) -> None:
    tt_crewai.enable(tracker)
    tt_crewai.enable(tracker)
    assert tt_crewai.enabled()
    llm = LLM(model=MODEL, base_url=server.url("openai"), api_key="test")

    llm.call("hi")
    crewai_event_bus.flush()
    assert len(tracker.history()) == 1  # once, not once per enable()

    tt_crewai.disable()
    llm.call("hi again")
    crewai_event_bus.flush()
    assert len(tracker.history()) == 1
