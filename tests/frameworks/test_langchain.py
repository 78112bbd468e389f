"""LangChain / LangGraph: each chat-model call recorded exactly once and attributed to the graph node,
agent or tool that made it — `ChatOpenAI` and `ChatAnthropic` invoked, batched and streamed (sync and
async), tools bound, a two-node LangGraph graph and a prebuilt ReAct agent with a tool — under
`instrument()`, the integration (`enable()`, or the handler passed in `callbacks=`), or both. The real
LangChain packages drive the real SDK clients against the mock server."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph

import tokentrail as tt
from tokentrail.integrations import langchain as tt_langchain
from tokentrail.testing.mock_llm import MockLLMServer, MockResponse
from tokentrail.tracker import Tracker

from .conftest import LAYERS, Matrix

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-6"
PROMPT = "How are tokens counted when a prompt is cached?"
T = TypeVar("T")
MODES = ("invoke", "ainvoke", "batch", "abatch", "stream", "astream")


_RUNNER: list[asyncio.Runner] = []


@pytest.fixture(scope="module", autouse=True)
def event_loop_for_the_module() -> Iterator[None]:
    """One event loop for every async call here: langchain-openai and langchain-anthropic share one
    cached async HTTP client per base URL, whose connections belong to the loop that opened them."""
    with asyncio.Runner() as runner:
        _RUNNER[:] = [runner]
        yield
    _RUNNER.clear()


def run_async(work: Coroutine[Any, Any, T]) -> T:
    return _RUNNER[0].run(work)


@pytest.fixture(autouse=True)
def integration_off() -> Iterator[None]:
    """`enable()` is process-wide: each test leaves it off."""
    try:
        yield
    finally:
        tt_langchain.disable()


def use_layer(layer: str, tracker: Tracker, via: str = "enable") -> list[Any]:
    """Turn on `layer`; the callbacks to pass in the run's config. The integration is `enable()`
    (nothing to pass) or, with `via="callbacks"`, a handler passed in `callbacks=`."""
    if layer in ("instrument", "both"):
        tt.instrument(tracker)
    if layer not in ("integration", "both"):
        return []
    if via == "callbacks":
        return [tt.TokentrailCallbackHandler(tracker)]
    tt_langchain.enable(tracker)
    return []


def openai_model(server: MockLLMServer, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=server.url("openai"), api_key="test", model=OPENAI_MODEL, max_retries=0, **options
    )


def anthropic_model(server: MockLLMServer) -> ChatAnthropic:
    return ChatAnthropic(  # type: ignore[call-arg]
        base_url=server.url("anthropic"), api_key="test", model=ANTHROPIC_MODEL, max_retries=0
    )


def tokens_of(messages: Sequence[BaseMessage]) -> tuple[int, int]:
    """LangChain's own usage numbers, summed over the AI messages it returned."""
    metas = [m.usage_metadata for m in messages if isinstance(m, AIMessage) and m.usage_metadata]
    return sum(u["input_tokens"] for u in metas), sum(u["output_tokens"] for u in metas)


def drive(model: Any, mode: str, config: dict[str, Any]) -> list[BaseMessage]:
    """Call `model` the way `mode` says; a stream is read to its end and its chunks added up."""
    if mode == "invoke":
        return [model.invoke(PROMPT, config=config)]
    if mode == "batch":
        return list(model.batch([PROMPT, PROMPT + " Briefly."], config=config))
    if mode == "stream":
        return [_added(model.stream(PROMPT, config=config))]

    async def run() -> list[BaseMessage]:
        if mode == "ainvoke":
            return [await model.ainvoke(PROMPT, config=config)]
        if mode == "abatch":
            return list(await model.abatch([PROMPT, PROMPT + " Briefly."], config=config))
        full: AIMessageChunk | None = None
        async for chunk in model.astream(PROMPT, config=config):
            full = chunk if full is None else full + chunk
        assert full is not None
        return [full]

    return run_async(run())


def _added(chunks: Iterator[AIMessageChunk]) -> AIMessageChunk:
    full: AIMessageChunk | None = None
    for chunk in chunks:
        full = chunk if full is None else full + chunk
    assert full is not None
    return full


@dataclass
class Outcome:
    made: int
    tokens: tuple[int, int]


def measured(server: MockLLMServer, work: Callable[[], list[BaseMessage]]) -> Outcome:
    """Run `work`; the requests the server got and LangChain's own token totals."""
    before = len(server.requests)
    messages = work()
    return Outcome(len(server.requests) - before, tokens_of(messages))


def expected_agents(layer: str, agents: list[str | None]) -> list[str | None]:
    """Attribution comes from the integration; `instrument()` alone has it once it enables the
    integration itself."""
    if layer == "instrument" and not tt_langchain.is_enabled():
        return [None] * len(agents)
    return agents


# -- chat models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", MODES)
def test_chat_openai_is_recorded_once(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, mode: str, layer: str
) -> None:
    callbacks = use_layer(layer, tracker)
    model = openai_model(server, stream_usage=True)
    outcome = measured(server, lambda: drive(model, mode, {"callbacks": callbacks, "run_name": "writer"}))
    records = tracker.history()
    matrix.check(
        "langchain-openai",
        mode,
        layer,
        made=outcome.made,
        records=records,
        expected_tokens=outcome.tokens,
        expected_agents=expected_agents(layer, ["writer"] * outcome.made),
    )


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", MODES)
def test_chat_anthropic_is_recorded_once(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, mode: str, layer: str
) -> None:
    callbacks = use_layer(layer, tracker)
    model = anthropic_model(server)
    outcome = measured(server, lambda: drive(model, mode, {"callbacks": callbacks, "run_name": "writer"}))
    matrix.check(
        "langchain-anthropic",
        mode,
        layer,
        made=outcome.made,
        records=tracker.history(),
        expected_tokens=outcome.tokens,
        expected_agents=expected_agents(layer, ["writer"] * outcome.made),
    )


@pytest.mark.filterwarnings("ignore:Unexpected type for token usage")  # LangChain merging None details
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", ["generate", "agenerate"])
def test_multi_prompt_generate_is_recorded_once(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, mode: str, layer: str
) -> None:
    """`generate([...])` starts every prompt's run before it makes any call: still one record a call."""
    from langchain_core.messages import HumanMessage

    use_layer(layer, tracker)
    model = openai_model(server)
    prompts = [[HumanMessage(PROMPT)], [HumanMessage(PROMPT + " Briefly.")], [HumanMessage("Why?")]]

    def work() -> list[BaseMessage]:
        result = model.generate(prompts) if mode == "generate" else run_async(model.agenerate(prompts))
        return [g.message for gens in result.generations for g in gens]  # type: ignore[attr-defined]

    outcome = measured(server, work)
    matrix.check(
        "langchain-openai",
        f"{mode} 3 prompts",
        layer,
        made=outcome.made,
        records=tracker.history(),
        expected_tokens=outcome.tokens,
        expected_agents=[None] * 3,
    )


@pytest.mark.parametrize("layer", ["instrument", "both"])
@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_stream_without_stream_usage_under_instrument(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, mode: str, layer: str
) -> None:
    """`instrument()` asks the API for stream usage itself, so LangChain sees it too: complete records
    (the integration alone records `unknown`: see `test_stream_without_usage_is_unknown_and_says_the_fix`)."""
    use_layer(layer, tracker)
    outcome = measured(server, lambda: drive(openai_model(server), mode, {}))
    matrix.check(
        "langchain-openai",
        f"{mode}, no stream_usage",
        layer,
        made=outcome.made,
        records=tracker.history(),
        expected_tokens=outcome.tokens,
        expected_agents=[None],
    )


@tool
def lookup(query: str) -> str:
    """Look a fact up."""
    return "Cached prompt tokens are billed at the cache-read price."


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", ["invoke", "astream"])
def test_bound_tools_call_is_recorded_once(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, mode: str, layer: str
) -> None:
    callbacks = use_layer(layer, tracker)
    server.queue(MockResponse(tool_calls=[{"name": "lookup", "arguments": {"query": "cache"}}]))
    model = openai_model(server, stream_usage=True).bind_tools([lookup])
    outcome = measured(server, lambda: drive(model, mode, {"callbacks": callbacks}))
    matrix.check(
        "langchain-openai",
        f"bind_tools {mode}",
        layer,
        made=outcome.made,
        records=tracker.history(),
        expected_tokens=outcome.tokens,
        expected_agents=[None],
    )


# -- LangGraph ---------------------------------------------------------------------------------------


def two_node_graph(model: Any) -> Any:
    """researcher → writer, each node one model call."""

    def researcher(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    async def writer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    def writer_sync(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("researcher", researcher)
    builder.add_node("writer", writer_sync)
    builder.add_edge(START, "researcher")
    builder.add_edge("researcher", "writer")
    builder.add_edge("writer", END)
    sync_graph = builder.compile()
    builder = StateGraph(MessagesState)
    builder.add_node("researcher", researcher)
    builder.add_node("writer", writer)
    builder.add_edge(START, "researcher")
    builder.add_edge("researcher", "writer")
    builder.add_edge("writer", END)
    return sync_graph, builder.compile()


GRAPH_MODES = ("invoke", "ainvoke", "stream", "astream", "stream messages")


def run_graph(graph: Any, async_graph: Any, mode: str, config: dict[str, Any]) -> list[BaseMessage]:
    """Run a graph the way `mode` says; the messages it ends with."""
    inputs = {"messages": [("user", PROMPT)]}
    if mode == "invoke":
        return list(graph.invoke(inputs, config=config)["messages"])
    if mode in ("stream", "stream messages"):  # "messages" streams each model call token by token
        modes = ["values", "messages"] if mode == "stream messages" else ["values"]
        state: dict[str, Any] = {}
        for kind, values in graph.stream(inputs, config=config, stream_mode=modes):
            if kind == "values":
                state = values
        return list(state["messages"])

    async def run() -> list[BaseMessage]:
        if mode == "ainvoke":
            return list((await async_graph.ainvoke(inputs, config=config))["messages"])
        last: dict[str, Any] = {}
        async for values in async_graph.astream(inputs, config=config, stream_mode="values"):
            last = values
        return list(last["messages"])

    return run_async(run())


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", GRAPH_MODES)
def test_langgraph_nodes_are_the_agents(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, mode: str, layer: str
) -> None:
    callbacks = use_layer(layer, tracker, via="callbacks")
    graph, async_graph = two_node_graph(openai_model(server, stream_usage=True))
    config = {"callbacks": callbacks, "configurable": {"thread_id": "t-7"}, "tags": ["eval"]}
    outcome = measured(server, lambda: run_graph(graph, async_graph, mode, config))
    records = tracker.history()
    matrix.check(
        "langgraph",
        f"2 nodes {mode}",
        layer,
        made=outcome.made,
        records=records,
        expected_tokens=outcome.tokens,
        expected_agents=expected_agents(layer, ["researcher", "writer"]),
    )
    if layer != "instrument" or tt_langchain.is_enabled():
        assert {r.attribution.session for r in records} == {"t-7"}
        assert all(r.attribution.tags == ("eval",) for r in records)


_TOOL_MODEL: list[Any] = []  # the model the `summarize` tool calls
_TOOL_ANSWERS: list[BaseMessage] = []  # what it answered (its usage is not in the agent's messages)


@tool
def summarize(text: str) -> str:
    """Summarize a text (with a model call of its own)."""
    answer = _TOOL_MODEL[0].invoke(f"Summarize: {text}")
    _TOOL_ANSWERS.append(answer)
    return str(answer.content)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("mode", GRAPH_MODES)
def test_react_agent_with_a_tool(
    server: MockLLMServer, tracker: Tracker, matrix: Matrix, mode: str, layer: str
) -> None:
    """The agent's two turns are the agent's; the model call inside the tool is also the tool's."""
    from langgraph.prebuilt import create_react_agent

    callbacks = use_layer(layer, tracker)
    model = openai_model(server, stream_usage=True)
    _TOOL_MODEL[:], _TOOL_ANSWERS[:] = [model], []
    server.queue(
        MockResponse(tool_calls=[{"name": "summarize", "arguments": {"text": "tokens"}}]),
        MockResponse(text="Cached tokens are cheaper."),  # the tool's own call
        MockResponse(text="They are billed at the cache-read price."),
    )
    with warnings.catch_warnings():  # create_react_agent moved to `langchain.agents` (not installed)
        warnings.simplefilter("ignore")
        agent = create_react_agent(model, [summarize], name="support")
    outcome = measured(
        server, lambda: run_graph(agent, agent, mode, {"callbacks": callbacks}) + _TOOL_ANSWERS
    )
    records = tracker.history()
    matrix.check(
        "langgraph",
        f"react agent {mode}",
        layer,
        made=outcome.made,
        records=records,
        expected_tokens=outcome.tokens,
        expected_agents=expected_agents(layer, ["support"] * 3),
    )
    if layer != "instrument" or tt_langchain.is_enabled():
        assert sorted(map(str, (r.attribution.tool for r in records))) == ["None", "None", "summarize"]


# -- the integration's own promises ------------------------------------------------------------------


def test_stream_without_usage_is_unknown_and_says_the_fix(server: MockLLMServer, tracker: Tracker) -> None:
    """A ChatOpenAI stream created without `stream_usage=True` asks for no usage: the record is
    `unknown`, never 0 tokens, and its reason names the fix."""
    tt_langchain.enable(tracker)
    message = drive(openai_model(server), "stream", {})[0]
    assert isinstance(message, AIMessage) and message.usage_metadata is None
    (record,) = tracker.history()
    assert record.usage.status == tt.UsageStatus.UNKNOWN
    assert "ChatOpenAI(stream_usage=True)" in (record.usage.reason or "")


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_handler_in_callbacks_and_enable_record_once(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    """The issue's case: the handler in `callbacks=` plus `instrument()` (plus `enable()`), ChatOpenAI
    streams: one record per request."""
    tt.instrument(tracker)
    tt_langchain.enable(tracker)
    handler = tt.TokentrailCallbackHandler(tracker)
    model = openai_model(server, stream_usage=True)
    before = len(server.requests)
    for _ in range(4):
        drive(model, mode, {"callbacks": [handler]})
    assert len(server.requests) - before == 4
    assert len(tracker.history()) == 4


def test_two_handlers_on_one_run_record_it_once(server: MockLLMServer, tracker: Tracker) -> None:
    other = Tracker(capture="sync")
    drive(openai_model(server), "invoke", {"callbacks": [tt.TokentrailCallbackHandler(tracker)]})
    callbacks = [tt.TokentrailCallbackHandler(tracker), tt.TokentrailCallbackHandler(other)]
    drive(openai_model(server), "invoke", {"callbacks": callbacks})
    assert len(tracker.history()) == 2
    assert other.history() == []


def test_enable_is_idempotent_and_disable_stops_recording(server: MockLLMServer, tracker: Tracker) -> None:
    first = tt_langchain.enable(tracker)
    assert tt_langchain.enable(tracker) is first and tt_langchain.is_enabled()
    drive(openai_model(server), "invoke", {})
    tt_langchain.disable()
    assert not tt_langchain.is_enabled()
    drive(openai_model(server), "invoke", {})
    assert len(tracker.history()) == 1


@pytest.mark.parametrize("mode", ["ainvoke", "abatch", "astream"])
def test_no_attribution_outlives_an_async_run(server: MockLLMServer, tracker: Tracker, mode: str) -> None:
    """LangChain ends async model runs in gathered tasks, not where they began: the run's scope and
    claim must not stay on the caller's context (a later raw SDK call would be the run's)."""
    from tokentrail._claims import current_claim
    from tokentrail.scope import current_scope

    tt_langchain.enable(tracker)
    model = openai_model(server, stream_usage=True)

    async def call_then_look() -> tuple[Any, Any]:
        config = {"run_name": "writer", "tags": ["eval"]}
        if mode == "ainvoke":
            await model.ainvoke(PROMPT, config=config)
        elif mode == "abatch":
            await model.abatch([PROMPT, PROMPT], config=config)
        else:
            async for _ in model.astream(PROMPT, config=config):
                pass
        return current_scope(), current_claim()

    attribution, claim = run_async(call_then_look())
    assert attribution.agent is None and attribution.tags == () and attribution.path == ()
    assert claim is None or claim.taken is False
    assert {r.attribution.agent for r in tracker.history()} == {"writer"}


def test_a_raw_sdk_call_inside_a_node_is_the_nodes(server: MockLLMServer, tracker: Tracker) -> None:
    """Chain runs enter a scope too: an SDK call a node makes itself (not through LangChain) is
    attributed to the node by `instrument()`."""
    import openai

    tt.instrument(tracker)
    tt_langchain.enable(tracker)
    client = openai.OpenAI(base_url=server.url("openai"), api_key="test", max_retries=0)

    def fetch(state: MessagesState) -> dict[str, Any]:
        client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": PROMPT}])
        return {}

    builder = StateGraph(MessagesState)
    builder.add_node("fetcher", fetch)
    builder.add_edge(START, "fetcher")
    builder.add_edge("fetcher", END)
    builder.compile().invoke({"messages": [("user", PROMPT)]}, config={"configurable": {"thread_id": "t-9"}})
    (record,) = tracker.history()
    assert (record.attribution.agent, record.attribution.session) == ("fetcher", "t-9")
