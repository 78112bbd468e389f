"""OpenAI Agents SDK: each model call of a run recorded exactly once and attributed to the Agent that
made it — single agents, handoffs, agents as tools, function tools — on the Responses and the Chat
Completions model, with `Runner.run`, `run_sync` and `run_streamed`, under `instrument()`, the
integration, or both. The real SDK drives a real `AsyncOpenAI` client against the mock server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
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


# -- attribution details -----------------------------------------------------------------------------


def by_agent(tracker: Tracker) -> dict[str | None, list[Any]]:
    records: dict[str | None, list[Any]] = {}
    for record in tracker.history():
        records.setdefault(record.attribution.agent, []).append(record.attribution)
    return records


@pytest.mark.parametrize("layer", ["integration", "both"])
@pytest.mark.parametrize("mode", MODES)
def test_an_agent_run_as_a_tool_sits_under_its_caller_with_the_tool_name(
    server: MockLLMServer, tracker: Tracker, mode: str, layer: str
) -> None:
    use_layer(layer, tracker)
    agent_as_tool(server, "responses", mode)
    records = by_agent(tracker)
    assert [a.path for a in records["translator"]] == [("orchestrator", "translator")]
    assert [a.tool for a in records["translator"]] == ["translate"]
    assert [(a.path, a.tool) for a in records["orchestrator"]] == [(("orchestrator",), None)] * 2


@pytest.mark.parametrize("layer", ["integration", "both"])
@pytest.mark.parametrize("mode", MODES)
def test_a_handoff_inside_a_user_scope_gives_each_agent_its_own_calls(
    server: MockLLMServer, tracker: Tracker, mode: str, layer: str
) -> None:
    use_layer(layer, tracker)
    with tt.scope(agent="support-app", tags=["beta"]) as outer:
        handoff(server, "chat", mode)
        assert current_scope() == outer  # the run left no scope of its own behind
    records = by_agent(tracker)
    assert set(records) == {"specialist", "triage"}
    assert [a.path for a in records["triage"]] == [("support-app", "triage")]
    assert [a.path for a in records["specialist"]] == [("support-app", "specialist")]
    assert all(a.tags == ("beta",) for group in records.values() for a in group)


@pytest.mark.parametrize("mode", MODES)
def test_a_run_leaves_no_scope_behind(server: MockLLMServer, tracker: Tracker, mode: str) -> None:
    use_layer("integration", tracker)
    before = current_scope()
    agent_as_tool(server, "chat", mode)
    assert current_scope() == before
    assert len(tracker.history()) == 3


def test_an_sdk_call_made_inside_a_function_tool_is_attributed_to_the_tool(
    server: MockLLMServer, tracker: Tracker
) -> None:
    """A call the tool makes itself has no model span: `instrument()` records it, with the tool's scope."""
    use_layer("both", tracker)
    client = AsyncOpenAI(base_url=server.url("openai"), api_key="test")

    @function_tool
    async def summarize(text: str) -> str:
        """Summarize a text."""
        response = await client.responses.create(model=MODEL, input=f"Summarize: {text}")
        return response.output_text

    agent = Agent(
        name="editor",
        instructions="Use your tools.",
        model=OpenAIResponsesModel(model=MODEL, openai_client=client),
        tools=[summarize],
    )
    server.queue(tool_calls=[{"name": "summarize", "arguments": {"text": "a long story"}}])
    before = len(server.requests)
    Runner.run_sync(agent, "Summarize a long story.")
    assert len(server.requests) - before == 3
    attributions = [(r.attribution.agent, r.attribution.tool) for r in tracker.history()]
    assert sorted(attributions, key=str) == sorted(
        [("editor", None), ("editor", "summarize"), ("editor", None)], key=str
    )


@pytest.mark.parametrize("mode", MODES)
def test_agents_run_as_parallel_tools_each_get_their_own_tool(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    use_layer("both", tracker)
    shared = model(server, "chat")
    french = Agent(
        name="french", instructions="Translate to French.", model=shared, model_settings=settings("chat")
    )
    german = Agent(
        name="german", instructions="Translate to German.", model=shared, model_settings=settings("chat")
    )
    orchestrator = Agent(
        name="orchestrator",
        instructions="Use your tools.",
        model=shared,
        model_settings=settings("chat"),
        tools=[
            french.as_tool("to_french", "Translate to French."),
            german.as_tool("to_german", "Translate to German."),
        ],
    )
    server.queue(
        tool_calls=[
            {"name": "to_french", "arguments": {"input": "hello"}},
            {"name": "to_german", "arguments": {"input": "hello"}},
        ]
    )
    ran = scenario(
        server, orchestrator, "Translate hello.", mode, ["orchestrator", "french", "german", "orchestrator"]
    )
    records = tracker.history()
    assert len(records) == ran.made == 4
    seen = sorted((r.attribution.agent or "", r.attribution.tool or "", r.attribution.path) for r in records)
    assert seen == [
        ("french", "to_french", ("orchestrator", "french")),
        ("german", "to_german", ("orchestrator", "german")),
        ("orchestrator", "", ("orchestrator",)),
        ("orchestrator", "", ("orchestrator",)),
    ]


# -- session -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_the_run_group_id_is_the_session(server: MockLLMServer, tracker: Tracker, mode: str) -> None:
    use_layer("integration", tracker)
    agent = Agent(name="solo", instructions="Answer briefly.", model=model(server, "responses"))
    drive(agent, "Hello", mode, RunConfig(group_id="conversation-7"))
    assert [r.attribution.session for r in tracker.history()] == ["conversation-7"]


def test_without_a_group_id_the_trace_id_is_the_session_of_every_call_of_the_run(
    server: MockLLMServer, tracker: Tracker
) -> None:
    use_layer("integration", tracker)
    handoff(server, "responses", "run")
    sessions = {r.attribution.session for r in tracker.history()}
    assert len(sessions) == 1
    (session,) = sessions
    assert session is not None and session.startswith("trace_")


def test_a_session_the_caller_named_wins_over_a_generated_trace_id(
    server: MockLLMServer, tracker: Tracker
) -> None:
    use_layer("integration", tracker)
    with tt.scope(session="user-session-3"):
        single_agent(server, "responses", "run")
    assert [r.attribution.session for r in tracker.history()] == ["user-session-3"]


def test_concurrent_runs_keep_their_own_agents(server: MockLLMServer, tracker: Tracker) -> None:
    use_layer("integration", tracker)

    async def both() -> None:
        shared = model(server, "responses")
        agents = [Agent(name=f"worker-{i}", instructions="Answer.", model=shared) for i in range(4)]
        results = await asyncio.gather(
            *(
                Runner.run(a, f"Task {i}", run_config=RunConfig(group_id=f"g{i}"))
                for i, a in enumerate(agents)
            )
        )
        assert len(results) == 4

    asyncio.run(both())
    pairs = sorted((r.attribution.agent, r.attribution.session) for r in tracker.history())
    assert pairs == [(f"worker-{i}", f"g{i}") for i in range(4)]


# -- tracing disabled, processors --------------------------------------------------------------------


DISABLE_WAYS = ("set_tracing_disabled", "run_config")


def run_untraced(server: MockLLMServer, way: str) -> int:
    agent = Agent(name="solo", instructions="Answer briefly.", model=model(server, "responses"))
    before = len(server.requests)
    if way == "set_tracing_disabled":
        set_tracing_disabled(True)
        Runner.run_sync(agent, "Hello")
    else:
        Runner.run_sync(agent, "Hello", run_config=RunConfig(tracing_disabled=True))
    return len(server.requests) - before


@pytest.mark.parametrize("way", DISABLE_WAYS)
def test_with_tracing_disabled_the_integration_sees_no_call(
    server: MockLLMServer, tracker: Tracker, way: str
) -> None:
    """The documented limit: the SDK calls no processor when tracing is off."""
    use_layer("integration", tracker)
    assert run_untraced(server, way) == 1
    assert tracker.history() == []


@pytest.mark.parametrize("way", DISABLE_WAYS)
def test_with_tracing_disabled_instrument_still_records_each_call_once_without_the_agent(
    server: MockLLMServer, tracker: Tracker, way: str
) -> None:
    use_layer("both", tracker)
    with tt.scope(agent="app"):
        made = run_untraced(server, way)
    assert [r.attribution.agent for r in tracker.history()] == ["app"] * made


class Collecting:
    """A user's own tracing processor: it must keep receiving spans once tokentrail is enabled."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def on_trace_start(self, trace: Any) -> None:
        pass

    def on_trace_end(self, trace: Any) -> None:
        pass

    def on_span_start(self, span: Any) -> None:
        self.started.append(type(span.span_data).__name__)

    def on_span_end(self, span: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


def test_enable_adds_a_processor_beside_the_users_own_once(server: MockLLMServer, tracker: Tracker) -> None:
    mine = Collecting()
    set_trace_processors([mine])  # type: ignore[list-item]
    openai_agents.enable(tracker)
    openai_agents.enable(tracker)
    single_agent(server, "responses", "run")
    assert "ResponseSpanData" in mine.started
    assert len(tracker.history()) == 1  # enabled twice, recorded once


def test_enable_after_the_processors_were_replaced_adds_it_again(
    server: MockLLMServer, tracker: Tracker
) -> None:
    openai_agents.enable(tracker)
    set_trace_processors([])
    assert not openai_agents.is_enabled()
    openai_agents.enable(tracker)
    single_agent(server, "responses", "run")
    assert len(tracker.history()) == 1


def test_disable_stops_recording(server: MockLLMServer, tracker: Tracker) -> None:
    openai_agents.enable(tracker)
    openai_agents.disable()
    assert single_agent(server, "responses", "run").made == 1
    assert tracker.history() == []


def test_without_sensitive_data_a_responses_call_is_recorded_unpriced(
    server: MockLLMServer, tracker: Tracker
) -> None:
    """The documented limit: such a Responses span names no model; the tokens are still exact."""
    use_layer("integration", tracker)
    agent = Agent(name="solo", instructions="Answer briefly.", model=model(server, "responses"))
    result = Runner.run_sync(agent, "Hello", run_config=RunConfig(trace_include_sensitive_data=False))
    (record,) = tracker.history()
    assert (record.model, record.priced) == (None, False)
    usage = result.context_wrapper.usage
    assert (record.usage.input_tokens, record.usage.output_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )


UNTRACED_BY_ENV = """
import tokentrail as tt
from agents import Agent, OpenAIResponsesModel, Runner
from openai import AsyncOpenAI
from tokentrail.integrations import openai_agents

tracker = tt.Tracker(capture="sync")
openai_agents.enable(tracker)
client = AsyncOpenAI(base_url=URL, api_key="test")
agent = Agent(name="solo", instructions="Answer.", model=OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client))
Runner.run_sync(agent, "Hello")
print(len(tracker.history()))
"""


def test_with_tracing_disabled_by_the_environment_the_integration_sees_no_call(server: MockLLMServer) -> None:
    """OPENAI_AGENTS_DISABLE_TRACING is read once per process: checked in a fresh one."""
    env = {**os.environ, "OPENAI_AGENTS_DISABLE_TRACING": "1"}
    before = len(server.requests)
    code = f"URL = {server.url('openai')!r}\n" + UNTRACED_BY_ENV
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(server.requests) - before == 1
    assert done.stdout.strip() == "0"


@pytest.mark.parametrize("api", APIS)
def test_a_call_whose_response_reports_no_usage_is_unknown_never_zero(
    server: MockLLMServer, tracker: Tracker, api: str
) -> None:
    use_layer("integration", tracker)
    server.queue(omit_usage=True)
    agent = Agent(name="solo", instructions="Answer.", model=model(server, api), model_settings=settings(api))
    Runner.run_sync(agent, "Hello")
    (record,) = tracker.history()
    assert (record.usage.status.value, record.usage.total_tokens) == ("unknown", 0)
    assert record.usage.reason and record.attribution.agent == "solo"
