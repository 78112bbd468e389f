"""OpenAI Agents SDK: each model call of a run recorded exactly once and attributed to the Agent that
made it — single agents, handoffs, agents as tools, function tools — on the Responses and the Chat
Completions model, with `Runner.run`, `run_sync` and `run_streamed`, under `instrument()`, the
integration, or both. The real SDK drives a real `AsyncOpenAI` client against the mock server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    function_tool,
    set_trace_processors,
    set_tracing_disabled,
)
from agents.result import RunResultBase
from openai import AsyncOpenAI

import tokentrail as tt
from tokentrail.integrations import openai_agents
from tokentrail.scope import current_scope
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

from .conftest import LAYERS, Matrix

MODEL = "gpt-4o-mini"
MODES = ("run", "run_sync", "streamed")
APIS = ("responses", "chat")


@pytest.fixture(autouse=True)
def agents_tracing() -> Iterator[None]:
    """No exporter may reach the network: the SDK's default processors are dropped; the integration and
    tracing are reset after each test."""
    set_trace_processors([])
    set_tracing_disabled(False)
    try:
        yield
    finally:
        openai_agents.disable()
        set_trace_processors([])
        set_tracing_disabled(False)


def use_layer(layer: str, tracker: Tracker) -> None:
    if layer in ("instrument", "both"):
        tt.instrument(tracker)
    if layer in ("integration", "both"):
        openai_agents.enable(tracker)


def model(server: MockLLMServer, api: str) -> Any:
    """A model on a fresh client (an AsyncOpenAI client belongs to the event loop it first ran in)."""
    client = AsyncOpenAI(base_url=server.url("openai"), api_key="test")
    if api == "responses":
        return OpenAIResponsesModel(model=MODEL, openai_client=client)
    return OpenAIChatCompletionsModel(model=MODEL, openai_client=client)


def settings(api: str) -> ModelSettings:
    # a non-OpenAI base URL gets no stream usage from the Agents SDK unless asked for
    return ModelSettings(include_usage=True) if api == "chat" else ModelSettings()


def drive(agent: Agent[Any], prompt: str, mode: str, run_config: RunConfig | None = None) -> RunResultBase:
    """Run `agent` the way `mode` says; a streamed run's events are consumed to the end."""
    if mode == "run_sync":
        return Runner.run_sync(agent, prompt, run_config=run_config)

    async def run() -> RunResultBase:
        if mode == "run":
            return await Runner.run(agent, prompt, run_config=run_config)
        streamed = Runner.run_streamed(agent, prompt, run_config=run_config)
        async for _ in streamed.stream_events():
            pass
        return streamed

    return asyncio.run(run())


@dataclass
class Scenario:
    """One run of a stack: requests the server got, the framework's own token totals, who made each call."""

    made: int
    tokens: tuple[int, int]
    agents: list[str | None]


def expected_agents(layer: str, agents: list[str | None]) -> list[str | None]:
    """Per-agent attribution needs the integration: `instrument()` alone gives it once it enables the
    integration itself, and none before."""
    if layer == "instrument" and not openai_agents.is_enabled():
        return [None] * len(agents)
    return agents


def scenario(
    server: MockLLMServer, agent: Agent[Any], prompt: str, mode: str, agents: list[str | None]
) -> Scenario:
    """Run `agent` once; the run's usage covers every call it made (an agent run as a tool adds its own
    calls to its caller's usage)."""
    before = len(server.requests)
    usage = drive(agent, prompt, mode).context_wrapper.usage
    return Scenario(len(server.requests) - before, (usage.input_tokens, usage.output_tokens), agents)


# -- scenarios ---------------------------------------------------------------------------------------


def single_agent(server: MockLLMServer, api: str, mode: str) -> Scenario:
    agent = Agent(
        name="solo", instructions="Answer briefly.", model=model(server, api), model_settings=settings(api)
    )
    return scenario(server, agent, "What is a token?", mode, ["solo"])


def handoff(server: MockLLMServer, api: str, mode: str) -> Scenario:
    shared = model(server, api)
    specialist = Agent(
        name="specialist",
        instructions="Answer billing questions.",
        model=shared,
        model_settings=settings(api),
    )
    triage = Agent(
        name="triage",
        instructions="Route the user.",
        model=shared,
        model_settings=settings(api),
        handoffs=[specialist],
    )
    server.queue(tool_calls=[{"name": "transfer_to_specialist", "arguments": {}}])
    return scenario(server, triage, "Why was I billed twice?", mode, ["triage", "specialist"])


def agent_as_tool(server: MockLLMServer, api: str, mode: str) -> Scenario:
    shared = model(server, api)
    translator = Agent(
        name="translator", instructions="Translate to French.", model=shared, model_settings=settings(api)
    )
    orchestrator = Agent(
        name="orchestrator",
        instructions="Use your tools.",
        model=shared,
        model_settings=settings(api),
        tools=[translator.as_tool("translate", "Translate text to French.")],
    )
    server.queue(tool_calls=[{"name": "translate", "arguments": {"input": "good morning"}}])
    agents: list[str | None] = ["orchestrator", "translator", "orchestrator"]
    return scenario(server, orchestrator, "Say good morning in French.", mode, agents)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


def function_tool_run(server: MockLLMServer, api: str, mode: str) -> Scenario:
    agent = Agent(
        name="forecaster",
        instructions="Use your tools.",
        model=model(server, api),
        model_settings=settings(api),
        tools=[get_weather],
    )
    server.queue(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    return scenario(server, agent, "Weather in Paris?", mode, ["forecaster", "forecaster"])


SCENARIOS = {
    "single": single_agent,
    "handoff": handoff,
    "agent-as-tool": agent_as_tool,
    "function-tool": function_tool_run,
}


# -- the matrix --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stack", list(SCENARIOS))
def test_each_call_recorded_once_for_the_agent_that_made_it(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, stack: str, api: str, mode: str, layer: str
) -> None:
    use_layer(layer, tracker)
    ran = SCENARIOS[stack](server, api, mode)
    matrix.check(
        "openai-agents",
        f"{stack}/{api}/{mode}",
        layer,
        made=ran.made,
        records=tracker.history(),
        expected_tokens=ran.tokens,
        expected_agents=expected_agents(layer, ran.agents),
    )
