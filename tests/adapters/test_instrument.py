"""instrument() / wrap() on the real openai and anthropic SDKs, pointed at the local MockLLMServer."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

import anthropic
import openai
import pytest
from stainless_clients import CLAUDE, GPT, MESSAGES, ant, oai

import tokentrail as tt
from tokentrail.adapters import instrument, instrumented, uninstrument, wrap
from tokentrail.budgets import Budget
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker


def only(tracker: Tracker) -> tt.Record:
    records = tracker.history()
    assert len(records) == 1, records
    return records[0]


# -- plain calls ----------------------------------------------------------------------------------------------


def test_sync_chat_completion_is_recorded_and_priced_exactly(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(input=1200, output=80, cache_read=1024, route="openai.chat")
    response = oai(server).chat.completions.create(model=GPT, messages=MESSAGES)
    assert type(response).__name__ == "ChatCompletion"  # the SDK's own object
    record = only(tracker)
    usage = tt.Usage(1200, 80, cache_read_tokens=1024)
    assert record.usage == usage
    assert record.model == GPT and record.provider == "openai"
    assert record.cost == tt.price(usage, GPT, "openai").total
    assert record.duration_ms is not None and record.duration_ms > 0


def test_sync_responses_and_anthropic_messages(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(input=500, output=40, route="openai.responses")
    oai(server).responses.create(model=GPT, input="Summarize the ledger")
    server.queue(input=3000, output=120, cache_read=2000, cache_write=500, route="anthropic")
    message = ant(server).messages.create(model=CLAUDE, max_tokens=256, messages=MESSAGES)
    assert type(message).__name__ == "Message"
    first, second = tracker.history()
    assert first.usage == tt.Usage(500, 40)
    expected = tt.Usage(3000, 120, cache_read_tokens=2000, cache_write_tokens=500)
    assert second.usage == expected and second.provider == "anthropic"
    assert second.cost == tt.price(expected, CLAUDE, "anthropic").total


def test_async_calls(server: MockLLMServer, tracker: Tracker) -> None:
    async def run() -> None:
        server.queue(input=100, output=10, route="openai.chat")
        await oai(server, openai.AsyncOpenAI).chat.completions.create(model=GPT, messages=MESSAGES)
        server.queue(input=200, output=20, route="anthropic")
        await ant(server, anthropic.AsyncAnthropic).messages.create(
            model=CLAUDE, max_tokens=64, messages=MESSAGES
        )

    asyncio.run(run())
    assert [r.usage for r in tracker.history()] == [tt.Usage(100, 10), tt.Usage(200, 20)]


def test_azure_client_records_provider_azure(server: MockLLMServer, tracker: Tracker) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=server.base, api_key="test", api_version="2024-10-21", max_retries=0
    )
    server.queue(input=100, output=10, route="openai.chat")
    try:
        client.chat.completions.create(model=GPT, messages=MESSAGES)
    except openai.NotFoundError:
        pytest.skip("the mock server does not serve Azure deployment paths")
    assert only(tracker).provider == "azure"


# -- streams ---------------------------------------------------------------------------------------------------


def test_streamed_and_plain_calls_give_identical_usage(server: MockLLMServer, tracker: Tracker) -> None:
    client, claude = oai(server), ant(server)
    for stream in (False, True):
        server.queue(input=900, output=60, cache_read=512, route="openai.chat")
        result = client.chat.completions.create(model=GPT, messages=MESSAGES, stream=stream)
        if stream:
            chunks = list(result)
            assert chunks and not chunks[-1].choices  # the usage chunk include_usage added
        server.queue(input=700, output=30, route="openai.responses")
        result = client.responses.create(model=GPT, input="hi", stream=stream)
        if stream:
            list(result)
        server.queue(input=1500, output=50, cache_read=1000, route="anthropic")
        result = claude.messages.create(model=CLAUDE, max_tokens=99, messages=MESSAGES, stream=stream)
        if stream:
            with result as events:
                for _ in events:
                    pass
    plain, streamed = tracker.history()[:3], tracker.history()[3:]
    assert [r.usage for r in plain] == [r.usage for r in streamed]
    assert all(r.usage.status is tt.UsageStatus.COMPLETE for r in streamed)
    assert [r.cost for r in plain] == [r.cost for r in streamed]
    chat_requests = [r["body"] for r in server.requests if r["path"].endswith("/chat/completions")]
    assert chat_requests[-1]["stream_options"] == {"include_usage": True}


def test_user_stream_options_are_left_alone(server: MockLLMServer, tracker: Tracker) -> None:
    stream = oai(server).chat.completions.create(
        model=GPT, messages=MESSAGES, stream=True, stream_options={"include_usage": False}
    )
    list(stream)
    assert server.requests[-1]["body"]["stream_options"] == {"include_usage": False}
    assert only(tracker).usage.status is tt.UsageStatus.UNKNOWN


def test_stream_helpers(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(input=400, output=25, route="anthropic")
    with ant(server).messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as stream:
        assert stream.get_final_text()
    server.queue(input=300, output=15, route="openai.chat")
    with oai(server).chat.completions.stream(model=GPT, messages=MESSAGES) as chat:
        for _ in chat:
            pass
    server.queue(input=200, output=5, route="openai.responses")
    with oai(server).responses.stream(model=GPT, input="hi") as responses:
        for _ in responses:
            pass
    assert [r.usage for r in tracker.history()] == [tt.Usage(400, 25), tt.Usage(300, 15), tt.Usage(200, 5)]


def test_stream_aborted_after_the_second_chunk_records_partial(
    server: MockLLMServer, tracker: Tracker
) -> None:
    server.queue(input=800, output=40, route="anthropic")
    stream = ant(server).messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)
    for index, _ in enumerate(stream):
        if index == 1:
            break
    assert tracker.history() == []  # not finished yet
    stream.close()
    record = only(tracker)
    assert record.usage.status is tt.UsageStatus.PARTIAL
    assert record.usage.input_tokens == 800  # message_start was seen

    server.queue(input=800, output=40, route="openai.chat")
    chat = oai(server).chat.completions.create(model=GPT, messages=MESSAGES, stream=True)
    for index, _ in enumerate(chat):
        if index == 1:
            break
    del chat
    gc.collect()  # dropped without close(): recorded when collected
    assert len(tracker.history()) == 2
    assert tracker.history()[1].usage.status is not tt.UsageStatus.COMPLETE


def test_time_to_first_token_is_measured_to_the_first_content_event(
    server: MockLLMServer, tracker: Tracker
) -> None:
    server.queue(input=300, output=20, route="openai.chat", first_chunk_delay=0.15)
    list(oai(server).chat.completions.create(model=GPT, messages=MESSAGES, stream=True))
    server.queue(input=300, output=20, route="anthropic", first_chunk_delay=0.15)
    with ant(server).messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as stream:
        stream.get_final_text()
    server.queue(input=300, output=20, route="openai.chat")
    oai(server).chat.completions.create(model=GPT, messages=MESSAGES)
    chat, messages, plain = tracker.history()
    for record in (chat, messages):
        assert record.ttft_ms is not None and record.duration_ms is not None
        assert 150 <= record.ttft_ms <= record.duration_ms
    assert plain.ttft_ms is None  # not streamed: no first token to time


def test_a_tracker_without_ttft_ms_still_gets_stream_records(server: MockLLMServer) -> None:
    class OlderTracker:  # Tracker.record before it took ttft_ms
        budgets = None

        def __init__(self) -> None:
            self.seen: list[dict[str, object]] = []

        def record(
            self,
            usage: tt.Usage,
            model: str | None = None,
            provider: str | None = None,
            *,
            duration_ms: float | None = None,
            provider_cost: object = None,
            context: object = None,
        ) -> None:
            self.seen.append({"usage": usage, "duration_ms": duration_ms})

    older = OlderTracker()
    server.queue(input=300, output=20, route="openai.chat")
    list(wrap(oai(server), older).chat.completions.create(model=GPT, messages=MESSAGES, stream=True))
    assert [entry["usage"] for entry in older.seen] == [tt.Usage(300, 20)]


def test_stream_without_usage_records_unknown(server: MockLLMServer, tracker: Tracker) -> None:
    server.queue(omit_usage=True, route="openai.chat")
    list(oai(server).chat.completions.create(model=GPT, messages=MESSAGES, stream=True))
    record = only(tracker)
    assert record.usage.status is tt.UsageStatus.UNKNOWN and record.usage.reason
    assert record.cost is None  # never a silent $0


def test_async_stream_and_cancelled_task(server: MockLLMServer, tracker: Tracker) -> None:
    async def run() -> None:
        client = ant(server, anthropic.AsyncAnthropic)
        server.queue(input=600, output=30, route="anthropic")
        stream = await client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)
        async with stream as events:
            async for _ in events:
                pass

        server.queue(input=600, output=30, route="anthropic")
        started = asyncio.Event()

        async def reader() -> None:
            cut = await client.messages.create(model=CLAUDE, max_tokens=64, messages=MESSAGES, stream=True)
            async for _ in cut:
                started.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(reader())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    complete, cancelled = tracker.history()
    assert complete.usage == tt.Usage(600, 30)
    assert cancelled.usage.status is tt.UsageStatus.PARTIAL
    assert cancelled.usage.input_tokens == 600


# -- errors, scope, budgets -----------------------------------------------------------------------------------


def test_server_error_propagates_unchanged_and_records_nothing(
    server: MockLLMServer, tracker: Tracker
) -> None:
    server.queue(status=500, route="openai.chat")
    with pytest.raises(openai.InternalServerError):
        oai(server).chat.completions.create(model=GPT, messages=MESSAGES)
    server.queue(status=500, route="anthropic")
    with pytest.raises(anthropic.InternalServerError):
        ant(server).messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES, stream=True)
    assert tracker.history() == []
    assert tracker._shared.error_counts["call_errors"] == 2


def test_the_active_scope_is_attached(server: MockLLMServer, tracker: Tracker) -> None:
    client = oai(server)
    with tt.scope(agent="researcher", session="s1", tags=["x"]):
        client.chat.completions.create(model=GPT, messages=MESSAGES)
        stream = client.chat.completions.create(model=GPT, messages=MESSAGES, stream=True)
    list(stream)  # consumed outside the scope: still attributed to where the call was made
    for record in tracker.history():
        assert (record.agent, record.session, record.tags) == ("researcher", "s1", ("x",))


def test_budget_refusal_happens_before_the_request(server: MockLLMServer) -> None:
    tracker = Tracker(budgets=[Budget(limit_usd="0.001")])
    instrument(tracker)
    try:
        before = len(server.requests)
        with pytest.raises(tt.BudgetExceeded):
            oai(server).chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=100_000)
        with pytest.raises(tt.BudgetExceeded):
            ant(server).messages.create(model=CLAUDE, max_tokens=100_000, messages=MESSAGES, stream=True)
        assert len(server.requests) == before
        server.queue(input=100, output=10, route="openai.chat")
        oai(server).chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=50)
        server.queue(input=100, output=10, route="anthropic")
        list(ant(server).messages.create(model=CLAUDE, max_tokens=50, messages=MESSAGES, stream=True))
        assert len(server.requests) == before + 2
        (status,) = tracker.budget_status()
        spent = tt.price(tt.Usage(100, 10), GPT).total + tt.price(tt.Usage(100, 10), CLAUDE).total
        assert status.reserved_usd == 0 and status.spent_usd == spent
    finally:
        uninstrument()


# -- patching ----------------------------------------------------------------------------------------------------


def test_instrument_is_idempotent_and_uninstrument_restores(server: MockLLMServer) -> None:
    from openai._base_client import SyncAPIClient

    original = SyncAPIClient.request
    first, second = Tracker(), Tracker()
    assert instrument(first)[:2] == ["openai", "anthropic"]
    patched = SyncAPIClient.request
    instrument(second)  # again: nothing patched twice, the latest tracker wins
    assert SyncAPIClient.request is patched
    assert "openai._base_client.SyncAPIClient.request" in instrumented()
    oai(server).chat.completions.create(model=GPT, messages=MESSAGES)
    assert len(first.history()) == 0 and len(second.history()) == 1
    uninstrument()
    assert SyncAPIClient.request is original and instrumented() == []
    oai(server).chat.completions.create(model=GPT, messages=MESSAGES)
    assert len(second.history()) == 1


def test_sdks_imported_after_instrument_are_patched_on_import(server: MockLLMServer) -> None:
    program = f"""
import sys
import tokentrail as tt
tracker = tt.Tracker()
covered = tt.instrument(tracker)
assert "openai" in covered and "google-genai" in covered, covered
assert "openai" not in sys.modules and "google.genai" not in sys.modules  # nothing imported by it
import openai
client = openai.OpenAI(base_url="{server.url("openai")}", api_key="test", max_retries=0)
client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
assert len(tracker.history()) == 1, tracker.history()
tt.uninstrument()
client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
assert len(tracker.history()) == 1
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_instrument_only_some_providers(server: MockLLMServer) -> None:
    from anthropic._base_client import SyncAPIClient

    original = SyncAPIClient.request
    try:
        assert instrument(Tracker(), providers=["openai"]) == ["openai"]
        assert SyncAPIClient.request is original
    finally:
        uninstrument()


def test_wrap_affects_one_client_only(server: MockLLMServer) -> None:
    from openai._base_client import SyncAPIClient

    original = SyncAPIClient.request
    mine, everyone = Tracker(), Tracker()
    wrapped = wrap(oai(server), mine)
    assert wrap(wrapped, mine) is wrapped  # idempotent
    other = oai(server)
    wrapped.chat.completions.create(model=GPT, messages=MESSAGES)
    other.chat.completions.create(model=GPT, messages=MESSAGES)
    assert SyncAPIClient.request is original
    assert len(mine.history()) == 1
    instrument(everyone)  # both active: the wrapped client still records once, into its own tracker
    try:
        wrapped.chat.completions.create(model=GPT, messages=MESSAGES)
        other.chat.completions.create(model=GPT, messages=MESSAGES)
    finally:
        uninstrument()
    assert len(mine.history()) == 2 and len(everyone.history()) == 1

    claude = wrap(ant(server, anthropic.AsyncAnthropic), mine)

    async def run() -> None:
        await claude.messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES)

    asyncio.run(run())
    assert len(mine.history()) == 3


def test_wrap_rejects_unknown_clients() -> None:
    with pytest.raises(TypeError):
        wrap(object())


def test_tracking_failures_never_reach_the_caller(server: MockLLMServer) -> None:
    class Broken:
        budgets = None

        def record(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("boom")

    client = wrap(oai(server), Broken())
    assert client.chat.completions.create(model=GPT, messages=MESSAGES).choices
    assert list(client.chat.completions.create(model=GPT, messages=MESSAGES, stream=True))


def test_instrument_enables_the_installed_frameworks_integrations_on_import(server: MockLLMServer) -> None:
    program = """
import sys
import tokentrail as tt
covered = tt.instrument(tt.Tracker())
assert "openai_agents" in covered.frameworks and "langchain" in covered.frameworks, covered.frameworks
assert "agents" not in sys.modules and "langchain_core" not in sys.modules  # nothing imported by it
import agents
from tokentrail.integrations import openai_agents
assert openai_agents.is_enabled()
import langchain_core
from tokentrail.integrations import langchain
assert langchain.is_enabled()
assert "openai._base_client.SyncAPIClient.request" in covered.methods
tt.uninstrument()
assert not openai_agents.is_enabled() and not langchain.is_enabled()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
