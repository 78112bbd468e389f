"""Work the provider runs server-side, under `instrument()`, with the real SDK clients against the mock
server (`_mock_batches`, `_mock_runs`), sync and async, plain, `with_raw_response` and
`with_streaming_response`:

- an OpenAI Batch output file read with `files.content`: one record per succeeded request at batch
  prices, once per response id; the input file, the error file and other files record nothing;
- an OpenAI eval run: one record per model of `per_model_usage` once the run is seen finished, once per
  run however often it is retrieved;
- an Anthropic dream: its usage once seen finished, once per dream; a canceled dream as `partial`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import openai
import pytest
from tests.adapters.stainless_clients import GPT, afetch, ant, calls, fetch, oai

import tokentrail as tt
from tokentrail.adapters import instrument, uninstrument
from tokentrail.budgets.policy import Budget
from tokentrail.testing._mock_runs import GRADER
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.tracker import Tracker

MODES = ["plain", "with_raw_response", "with_streaming_response"]
DREAM_MODEL = "claude-opus-4-7"


# -- OpenAI Batch output files ---------------------------------------------------------------------------------


def _batch_input(endpoint: str = "/v1/chat/completions") -> bytes:
    """Two requests that succeed (different prompts, so different usage) and one that fails."""
    if endpoint.endswith("/embeddings"):
        bodies = [
            {"model": "text-embedding-3-small", "input": text} for text in ("tokens", "costs in Decimal")
        ]
        bad: dict[str, Any] = {"model": "text-embedding-3-small", "input": []}
    else:
        asks = ("How are tokens counted?", "What does a cached prompt cost at batch prices?")
        bodies = [{"model": GPT, "messages": [{"role": "user", "content": text}]} for text in asks]
        bad = {"model": GPT, "messages": []}
    lines = [
        {"custom_id": f"request-{i}", "method": "POST", "url": endpoint, "body": body}
        for i, body in enumerate([*bodies, bad])
    ]
    return b"\n".join(json.dumps(line).encode() for line in lines) + b"\n"


def _output_usage(content: bytes) -> list[tuple[int, int]]:
    """(input, output) tokens of each succeeded line of a Batch output file (what the records must equal)."""
    found = []
    for line in content.splitlines():
        response = json.loads(line)["response"]
        if response["status_code"] == 200:
            usage = response["body"]["usage"]
            found.append((usage["prompt_tokens"], usage.get("completion_tokens", 0)))
    return sorted(found)


def _assert_batch_records(
    tracker: Tracker, content: bytes, model: str = GPT, *, discount: bool = True
) -> None:
    expected = _output_usage(content)
    assert len(expected) == 2  # the failed request is in the error file, not billed
    records = tracker.history()
    assert sorted((r.usage.input_tokens, r.usage.output_tokens) for r in records) == expected
    for record in records:
        assert record.model == model and record.provider == "openai"
        assert record.usage.status == "complete"
        assert record.context is not None and record.context["processing"] == "batch"
        assert record.cost == tt.price(record.usage, model, "openai", context=dict(record.context)).total
        if discount:  # the batch price applied (the catalog has none for embeddings models)
            assert record.cost != tt.price(record.usage, model, "openai").total


def _content(read: Any) -> bytes:
    """The bytes of what `files.content` returned, however it was called."""
    return read if isinstance(read, bytes) else read.content


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_output_file_is_one_batch_priced_record_per_succeeded_request(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    client = oai(server)
    uploaded = client.files.create(file=("input.jsonl", _batch_input()), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.output_file_id and batch.error_file_id
    assert _content(fetch(client.files, "content", mode, uploaded.id)).count(b"\n") == 3
    assert fetch(client.batches, "retrieve", mode, batch.id).status == "completed"
    assert tracker.history() == []  # the input file and the batch object are no billed output
    content = _content(fetch(client.files, "content", mode, batch.output_file_id))
    _assert_batch_records(tracker, content)
    for _ in range(2):  # read again, and the error file: nothing new
        fetch(client.files, "content", mode, batch.output_file_id)
        fetch(client.files, "content", mode, batch.error_file_id)
    assert calls(server, "GET", f"/v1/files/{batch.output_file_id}/content") == 3  # each reached the server
    _assert_batch_records(tracker, content)


@pytest.mark.parametrize("mode", MODES)
def test_async_batch_output_file_records_once(server: MockLLMServer, tracker: Tracker, mode: str) -> None:
    async def run() -> bytes:
        client = oai(server, openai.AsyncOpenAI)
        uploaded = await client.files.create(file=("input.jsonl", _batch_input()), purpose="batch")
        batch = await client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.output_file_id and batch.error_file_id
        await afetch(client.files, "content", mode, uploaded.id)
        content = _content(await afetch(client.files, "content", mode, batch.output_file_id))
        await afetch(client.files, "content", mode, batch.output_file_id)
        await afetch(client.files, "content", mode, batch.error_file_id)
        return content

    _assert_batch_records(tracker, asyncio.run(run()))


def test_a_batch_output_file_streamed_is_recorded_as_the_caller_reads_it(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = oai(server)
    uploaded = client.files.create(file=("input.jsonl", _batch_input()), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.output_file_id
    with client.files.with_streaming_response.content(batch.output_file_id) as response:
        assert tracker.history() == []  # nothing read yet
        lines = [line for line in response.iter_lines() if line]
    assert len(lines) == 2
    _assert_batch_records(tracker, "\n".join(lines).encode())


def test_an_embeddings_batch_output_file_records_its_prompt_tokens(
    server: MockLLMServer, tracker: Tracker
) -> None:
    client = oai(server)
    uploaded = client.files.create(file=("input.jsonl", _batch_input("/v1/embeddings")), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert batch.output_file_id
    content = client.files.content(batch.output_file_id).content
    _assert_batch_records(tracker, content, "text-embedding-3-small", discount=False)
    assert all(r.usage.output_tokens == 0 for r in tracker.history())


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 600,  # an image: no line end for 150 KB
        b'{"prompt": "a training example", "completion": "with a \\"response\\" in it"}\n' * 50,
        b'{"custom_id": "not a batch output", "response": "a string"}\n',
    ],
    ids=["binary", "jsonl-training-data", "look-alike"],
)
@pytest.mark.parametrize("mode", MODES)
def test_files_that_are_no_batch_output_record_nothing(
    server: MockLLMServer, tracker: Tracker, mode: str, data: bytes
) -> None:
    client = oai(server)
    uploaded = client.files.create(file=("data.bin", data), purpose="user_data")
    if mode == "with_streaming_response":
        with client.files.with_streaming_response.content(uploaded.id) as response:
            read = b"".join(response.iter_bytes())
    else:
        read = _content(fetch(client.files, "content", mode, uploaded.id))
    assert read == data  # what the caller reads is unchanged
    assert tracker.history() == []
    assert tracker.error_counts.get("capture_errors", 0) == 0


def test_batch_output_is_recorded_past_a_spent_budget(server: MockLLMServer) -> None:
    """The batch was billed when it ran: reading its output file holds no budget and is never refused."""
    tracker = Tracker(budgets=[Budget(limit_tokens=1)])
    instrument(tracker)
    try:
        client = oai(server)
        contents = []
        for _ in range(2):
            uploaded = client.files.create(file=("input.jsonl", _batch_input()), purpose="batch")
            batch = client.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            assert batch.output_file_id
            contents.append(client.files.content(batch.output_file_id).content)
    finally:
        uninstrument()
    assert len(tracker.history()) == 4


# -- OpenAI eval runs --------------------------------------------------------------------------------------------

_DATA_SOURCE = {
    "type": "completions",
    "model": GPT,
    "source": {"type": "file_content", "content": [{"item": {"q": "1+1"}}, {"item": {"q": "2+2"}}]},
    "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.q}}"}]},
}


def _assert_eval_records(tracker: Tracker, run: Any) -> None:
    """One complete record per model the finished run reports, with its tokens and model."""
    assert run.status in ("completed", "canceled")
    reported = {u.model_name: u for u in run.per_model_usage}
    assert set(reported) == {GPT, GRADER}
    records = tracker.history()
    assert sorted(r.model for r in records) == sorted(reported)
    for record in records:
        usage = reported[record.model]
        assert record.provider == "openai" and record.usage.status == "complete"
        assert record.usage.input_tokens == usage.prompt_tokens
        assert record.usage.output_tokens == usage.completion_tokens
        assert record.usage.cache_read_tokens == usage.cached_tokens
        assert record.usage.requests == usage.invocation_count
        assert record.cost is not None and record.cost > 0


@pytest.mark.parametrize("mode", MODES)
def test_an_eval_run_is_recorded_once_per_model_when_seen_finished(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    client = oai(server)
    run = fetch(client.evals.runs, "create", mode, "eval_abc", data_source=_DATA_SOURCE, name="arith")
    assert run.status == "queued" and tracker.history() == []
    run = fetch(client.evals.runs, "retrieve", mode, run.id, eval_id="eval_abc")
    assert run.status == "in_progress" and tracker.history() == []
    for _ in range(3):  # seen finished three times: recorded once
        run = fetch(client.evals.runs, "retrieve", mode, run.id, eval_id="eval_abc")
    assert calls(server, "GET", f"/v1/evals/eval_abc/runs/{run.id}") == 4
    fetch(client.evals.runs, "cancel", mode, run.id, eval_id="eval_abc")  # finished already: nothing new
    _assert_eval_records(tracker, run)


@pytest.mark.parametrize("mode", MODES)
def test_async_eval_run_canceled_is_recorded_once(server: MockLLMServer, tracker: Tracker, mode: str) -> None:
    async def run() -> Any:
        client = oai(server, openai.AsyncOpenAI)
        created = await afetch(
            client.evals.runs, "create", mode, "eval_x", data_source=_DATA_SOURCE, name="a"
        )
        canceled = await afetch(client.evals.runs, "cancel", mode, created.id, eval_id="eval_x")
        assert canceled.status == "canceled"
        again = await afetch(client.evals.runs, "retrieve", mode, created.id, eval_id="eval_x")
        assert [u.to_dict() for u in again.per_model_usage] == [u.to_dict() for u in canceled.per_model_usage]
        return again

    _assert_eval_records(tracker, asyncio.run(run()))


def test_eval_runs_listed_record_nothing(server: MockLLMServer, tracker: Tracker) -> None:
    client = oai(server)
    run = client.evals.runs.create("eval_list", data_source=_DATA_SOURCE, name="listed")
    client.evals.runs.cancel(run.id, eval_id="eval_list")  # recorded here
    count = len(tracker.history())
    assert count == 2
    client.evals.runs.list("eval_list")  # not tracked: runs listed were made anywhere, at any time
    assert len(tracker.history()) == count


# -- Anthropic dreams ----------------------------------------------------------------------------------------------

_INPUTS = [{"type": "memory_store", "memory_store_id": "memstore_01abc"}]


def _assert_dream_record(tracker: Tracker, dream: Any, status: str = "complete") -> None:
    records = tracker.history()
    assert len(records) == 1
    record = records[0]
    usage = dream.usage
    assert record.model == DREAM_MODEL == dream.model.id and record.provider == "anthropic"
    assert record.usage.status == status
    cached = usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    assert record.usage.input_tokens == usage.input_tokens + cached
    assert record.usage.output_tokens == usage.output_tokens
    assert record.usage.cache_read_tokens == usage.cache_read_input_tokens
    assert record.usage.cache_write_tokens == usage.cache_creation_input_tokens
    assert record.cost is not None and record.cost > 0


@pytest.mark.parametrize("mode", MODES)
def test_a_dream_is_recorded_once_when_seen_finished(
    server: MockLLMServer, tracker: Tracker, mode: str
) -> None:
    client = ant(server)
    dreams = client.beta.dreams
    dream = fetch(dreams, "create", mode, inputs=_INPUTS, model=DREAM_MODEL)
    assert dream.status == "pending" and tracker.history() == []
    assert fetch(dreams, "retrieve", mode, dream.id).status == "running"
    assert tracker.history() == []
    for _ in range(3):
        dream = fetch(dreams, "retrieve", mode, dream.id)
    assert dream.status == "completed"
    archived = fetch(dreams, "archive", mode, dream.id)
    assert archived.archived_at is not None
    assert calls(server, "GET", f"/v1/dreams/{dream.id}") == 4
    _assert_dream_record(tracker, dream)


@pytest.mark.parametrize("mode", MODES)
def test_async_dream_canceled_is_partial_and_once(server: MockLLMServer, tracker: Tracker, mode: str) -> None:
    async def run() -> Any:
        client = ant(server, anthropic.AsyncAnthropic)
        dream = await afetch(client.beta.dreams, "create", mode, inputs=_INPUTS, model=DREAM_MODEL)
        canceled = await afetch(client.beta.dreams, "cancel", mode, dream.id)
        assert canceled.status == "canceled"
        await afetch(client.beta.dreams, "retrieve", mode, dream.id)
        return canceled

    _assert_dream_record(tracker, asyncio.run(run()), "partial")
    assert tracker.history()[0].usage.reason is not None


def test_dreams_listed_record_nothing(server: MockLLMServer, tracker: Tracker) -> None:
    client = ant(server)
    dream = client.beta.dreams.create(inputs=_INPUTS, model=DREAM_MODEL)
    client.beta.dreams.list()
    assert tracker.history() == []
    client.beta.dreams.cancel(dream.id)
    assert len(tracker.history()) == 1


def test_server_side_runs_hold_no_budget(server: MockLLMServer) -> None:
    """Creating a run reserves nothing (its cost comes later): a spent budget never refuses a poll."""
    tracker = Tracker(budgets=[Budget(limit_tokens=1)])
    instrument(tracker)
    try:
        client = ant(server)
        first = client.beta.dreams.create(inputs=_INPUTS, model=DREAM_MODEL)
        client.beta.dreams.cancel(first.id)  # spends the budget
        second = client.beta.dreams.create(inputs=_INPUTS, model=DREAM_MODEL)
        client.beta.dreams.cancel(second.id)
    finally:
        uninstrument()
    assert len(tracker.history()) == 2
