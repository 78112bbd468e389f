"""PydanticAI: each model request of an agent run recorded exactly once and attributed to the agent
(its name, or the one PydanticAI infers), the run id as session and the tool a delegated agent ran in —
on OpenAI chat, OpenAI Responses and Anthropic models, with `run`, `run_sync`, `run_stream`,
`run_stream_sync` and `iter`, under `instrument()`, the integration, or both. The real framework drives
real `AsyncOpenAI` / `AsyncAnthropic` clients against the mock server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from anthropic import AsyncAnthropic
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models import Model
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.usage import RunUsage

import tokentrail as tt
from tokentrail.integrations import pydantic_ai as tt_pydantic_ai
from tokentrail.testing.mock_llm import MockLLMServer, MockResponse
from tokentrail.tracker import Tracker

from .conftest import LAYERS, Matrix

FRAMEWORK = "pydantic-ai"
MODELS = ("chat", "responses", "anthropic")
MODES = ("run", "run_sync", "run_stream", "stream_sync", "iter", "iter_stream")
PROMPT = "What does tokentrail count?"
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-latest"


@pytest.fixture(autouse=True)
def integration_off() -> Iterator[None]:
    """Each test wires its own layers; the global hook is removed after it."""
    tt_pydantic_ai.disable()
    try:
        yield
    finally:
        tt_pydantic_ai.disable()


def use_layer(layer: str, tracker: Tracker) -> None:
    if layer in ("instrument", "both"):
        tt.instrument(tracker)
    if layer in ("integration", "both"):
        assert tt_pydantic_ai.enable(tracker)


def expected_agents(layer: str, agents: list[str | None]) -> list[str | None]:
    """Per-agent attribution needs the integration: `instrument()` alone gives it once it enables the
    integration itself, and none before."""
    if layer == "instrument" and not tt_pydantic_ai.is_enabled():
        return [None] * len(agents)
    return agents


def make_model(server: MockLLMServer, kind: str) -> Model:
    """A model on a fresh client (an async HTTP client belongs to the event loop it first ran in)."""
    if kind == "anthropic":
        client = AsyncAnthropic(base_url=server.url("anthropic"), api_key="test")
        return AnthropicModel(ANTHROPIC_MODEL, provider=AnthropicProvider(anthropic_client=client))
    provider = OpenAIProvider(base_url=server.url("openai"), api_key="test")
    if kind == "responses":
        return OpenAIResponsesModel(OPENAI_MODEL, provider=provider)
    return OpenAIChatModel(OPENAI_MODEL, provider=provider)


def drive(agent: Agent[Any, Any], mode: str, prompt: str = PROMPT) -> RunUsage:
    """Run `agent` the way `mode` says (streams consumed to the end); PydanticAI's own usage of the run."""
    if mode == "run_sync":
        return agent.run_sync(prompt).usage
    if mode == "stream_sync":  # run_stream_sync
        result = agent.run_stream_sync(prompt)
        for _ in result.stream_text():
            pass
        return result.usage
    return asyncio.run(drive_async(agent, mode, prompt))


async def drive_async(agent: Agent[Any, Any], mode: str, prompt: str) -> RunUsage:
    if mode == "run":
        return (await agent.run(prompt)).usage
    if mode == "run_stream":
        async with agent.run_stream(prompt) as stream:
            async for _ in stream.stream_text():
                pass
        return stream.usage
    async with agent.iter(prompt) as run:
        async for node in run:
            if mode == "iter_stream" and Agent.is_model_request_node(node):
                async with node.stream(run.ctx) as events:
                    async for _ in events:
                        pass
    return run.usage


class Made:
    """Requests the mock server received since this object was created."""

    def __init__(self, server: MockLLMServer) -> None:
        self._server = server
        self._before = len(server.requests)

    def __call__(self) -> int:
        return len(self._server.requests) - self._before


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", MODELS)
def test_each_request_is_recorded_once_for_the_agent(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, kind: str, mode: str, layer: str
) -> None:
    use_layer(layer, tracker)
    agent = Agent(make_model(server, kind), name="support")
    made = Made(server)

    usage = drive(agent, mode)

    records = tracker.history()
    matrix.check(
        FRAMEWORK,
        f"{kind} {mode}",
        layer,
        made=made(),
        records=records,
        expected_tokens=(usage.input_tokens, usage.output_tokens),
        expected_agents=expected_agents(layer, ["support"] * made()),
    )


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("kind", MODELS)
def test_a_run_with_a_tool_call_records_both_requests(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, kind: str, layer: str
) -> None:
    use_layer(layer, tracker)
    agent = Agent(make_model(server, kind), name="weather")

    @agent.tool_plain
    def forecast(city: str) -> str:
        return f"Sunny in {city}"

    server.queue(MockResponse(tool_calls=[{"name": "forecast", "arguments": {"city": "Oslo"}}]))
    made = Made(server)

    usage = drive(agent, "run", "Weather in Oslo?")

    assert made() == 2  # the tool call, then the answer with the tool's result
    matrix.check(
        FRAMEWORK,
        f"{kind} tool call",
        layer,
        made=made(),
        records=tracker.history(),
        expected_tokens=(usage.input_tokens, usage.output_tokens),
        expected_agents=expected_agents(layer, ["weather", "weather"]),
    )


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", ("run", "run_stream"))
def test_an_agent_delegated_to_in_a_tool_is_attributed_to_itself_and_the_tool(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, mode: str, layer: str
) -> None:
    use_layer(layer, tracker)
    researcher = Agent(make_model(server, "anthropic"), name="researcher")
    triage = Agent(make_model(server, "chat"), name="triage")

    @triage.tool
    async def research(ctx: RunContext[Any], topic: str) -> str:
        result = await researcher.run(f"Research {topic}", usage=ctx.usage)
        return result.output

    server.queue(
        MockResponse(tool_calls=[{"name": "research", "arguments": {"topic": "tokens"}}], route="openai.chat")
    )
    made = Made(server)

    usage = drive(triage, mode, "Ask the researcher about tokens")

    records = tracker.history()
    matrix.check(
        FRAMEWORK,
        f"delegation {mode}",
        layer,
        made=made(),
        records=records,
        expected_tokens=(usage.input_tokens, usage.output_tokens),  # the inner run adds to ctx.usage
        expected_agents=expected_agents(layer, ["triage", "researcher", "triage"]),
    )
    if layer == "instrument" and not tt_pydantic_ai.is_enabled():
        return
    by_agent = {r.attribution.agent: r for r in records}
    assert by_agent["researcher"].attribution.tool == "research"
    assert by_agent["researcher"].attribution.path[-2:] == ("triage", "researcher")
    assert [r.attribution.tool for r in records if r.attribution.agent == "triage"] == [None, None]
    sessions = {r.attribution.session for r in records}
    assert len(sessions) == 1 and None not in sessions  # the delegated run belongs to the outer run's session


ATTRIBUTING = ("integration", "both")  # the layers that know the agent and its run


@pytest.mark.parametrize("layer", ATTRIBUTING)
def test_the_session_is_the_run_id(server: MockLLMServer, tracker: Tracker, layer: str) -> None:
    use_layer(layer, tracker)
    agent = Agent(make_model(server, "chat"), name="support")

    result = agent.run_sync(PROMPT)

    assert [r.attribution.session for r in tracker.history()] == [result.run_id]


@pytest.mark.parametrize("layer", ATTRIBUTING)
def test_a_session_the_user_scoped_wins_over_the_run_id(
    server: MockLLMServer, tracker: Tracker, layer: str
) -> None:
    use_layer(layer, tracker)
    agent = Agent(make_model(server, "chat"), name="support")

    with tt.scope(session="conversation-7", user="ada"):
        agent.run_sync(PROMPT)

    [record] = tracker.history()
    assert (record.attribution.session, record.attribution.user, record.attribution.agent) == (
        "conversation-7",
        "ada",
        "support",
    )


def test_a_provider_call_inside_a_sync_tool_carries_the_tool(server: MockLLMServer, tracker: Tracker) -> None:
    use_layer("both", tracker)
    agent = Agent(make_model(server, "chat"), name="librarian")

    @agent.tool_plain
    def lookup(query: str) -> str:  # PydanticAI runs sync tools in a worker thread
        client = openai.OpenAI(base_url=server.url("openai"), api_key="test")
        reply = client.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": query}]
        )
        return reply.choices[0].message.content or ""

    server.queue(
        MockResponse(tool_calls=[{"name": "lookup", "arguments": {"query": "tokens"}}], route="openai.chat")
    )
    made = Made(server)

    result = agent.run_sync("Look up tokens")

    records = tracker.history()
    assert made() == len(records) == 3
    assert [(r.attribution.agent, r.attribution.tool) for r in records] == [
        ("librarian", None),
        ("librarian", "lookup"),
        ("librarian", None),
    ]
    assert {r.attribution.session for r in records} == {result.run_id}


def test_concurrent_runs_of_two_agents_keep_their_own_attribution(
    server: MockLLMServer, tracker: Tracker
) -> None:
    tt_pydantic_ai.enable(tracker)
    writer = Agent(make_model(server, "chat"), name="writer")
    critic = Agent(make_model(server, "anthropic"), name="critic")

    async def both() -> list[str]:
        runs = await asyncio.gather(*(agent.run(PROMPT) for agent in (writer, critic, writer, critic)))
        return [run.run_id for run in runs]

    run_ids = asyncio.run(both())

    records = tracker.history()
    assert sorted((r.attribution.session, r.attribution.agent) for r in records) == sorted(
        zip(run_ids, ["writer", "critic", "writer", "critic"], strict=True)
    )
    assert {r.attribution.agent: r.model for r in records} == {
        "writer": OPENAI_MODEL,
        "critic": ANTHROPIC_MODEL,
    }


def test_an_unnamed_agent_is_attributed_to_the_name_pydantic_ai_infers(
    server: MockLLMServer, tracker: Tracker
) -> None:
    tt_pydantic_ai.enable(tracker)
    helpdesk = Agent(make_model(server, "chat"))

    helpdesk.run_sync(PROMPT)

    assert helpdesk.name == "helpdesk"
    assert [r.attribution.agent for r in tracker.history()] == ["helpdesk"]


def test_agents_built_before_enable_are_tracked(server: MockLLMServer, tracker: Tracker) -> None:
    agent = Agent(make_model(server, "chat"), name="early")
    tt_pydantic_ai.enable(tracker)

    agent.run_sync(PROMPT)

    assert [r.attribution.agent for r in tracker.history()] == ["early"]


def test_enable_twice_records_once_and_disable_stops_recording(
    server: MockLLMServer, tracker: Tracker
) -> None:
    agent = Agent(make_model(server, "chat"), name="support")
    tt_pydantic_ai.enable(tracker)
    tt_pydantic_ai.enable(tracker)

    agent.run_sync(PROMPT)
    tt_pydantic_ai.disable()
    agent.run_sync(PROMPT)

    assert len(tracker.history()) == 1


def test_an_agent_given_the_capability_records_to_its_own_tracker(
    server: MockLLMServer, tracker: Tracker
) -> None:
    own = Tracker(capture="sync")
    agent = Agent(
        make_model(server, "chat"), name="support", capabilities=[tt_pydantic_ai.TokentrailCapability(own)]
    )
    tt_pydantic_ai.enable(tracker)  # the global hook does not add a second one

    agent.run_sync(PROMPT)

    assert (len(own.history()), len(tracker.history())) == (1, 0)


def test_usage_pydantic_ai_estimated_is_recorded_as_estimated(tracker: Tracker) -> None:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("counted locally")])

    tt_pydantic_ai.enable(tracker)
    agent = Agent(FunctionModel(answer), name="local")

    usage = agent.run_sync(PROMPT).usage

    [record] = tracker.history()
    assert record.usage.status is tt.UsageStatus.ESTIMATED
    assert (record.usage.input_tokens, record.usage.output_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )


@pytest.mark.parametrize("kind", ("chat", "responses"))  # Anthropic always sends usage
def test_a_response_without_usage_is_recorded_unknown(
    server: MockLLMServer, tracker: Tracker, kind: str
) -> None:
    tt_pydantic_ai.enable(tracker)
    agent = Agent(make_model(server, kind), name="support")
    server.queue(MockResponse(omit_usage=True))

    agent.run_sync(PROMPT)

    [record] = tracker.history()
    assert record.usage.status is tt.UsageStatus.UNKNOWN
    assert record.usage.reason


def test_a_stream_closed_early_is_recorded_partial(server: MockLLMServer, tracker: Tracker) -> None:
    tt_pydantic_ai.enable(tracker)
    agent = Agent(make_model(server, "anthropic"), name="support")
    server.queue(MockResponse(text="word " * 200, output=400))

    async def read_one_chunk() -> None:
        async with agent.run_stream(PROMPT) as stream:
            async for _ in stream.stream_text(delta=True, debounce_by=None):
                break  # the first text delta: the message_delta with the final usage is never read

    asyncio.run(read_one_chunk())

    [record] = tracker.history()
    assert record.usage.status is tt.UsageStatus.PARTIAL
    assert record.usage.output_tokens < 400  # what message_start said, not the whole answer
