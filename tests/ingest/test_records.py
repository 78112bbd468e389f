"""Spans become records through the tracker, each once: retried exports, replays after a restart,
duplicates inside one export, aggregate spans and calls recorded in-process write nothing twice, in
the ledger nor in a sink (budgets, metrics) that sees records."""

from __future__ import annotations

import time
from pathlib import Path

import tokentrail as tt
from tests.ingest.otlp_json import BASE_NS, chat, export, span
from tokentrail import Usage
from tokentrail._types import UsageStatus
from tokentrail.ingest.otlp import decode_json
from tokentrail.ingest.records import TAG, Ingestor, span_record_id


def _ingest(ingestor: Ingestor, body: bytes) -> dict[str, int]:
    return ingestor.ingest(decode_json(body)).as_dict()


def test_each_call_span_is_one_priced_attributed_record() -> None:
    tracker = tt.Tracker()
    body = export(
        span(
            1,
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "researcher",
                "gen_ai.usage.input_tokens": 300,
                "gen_ai.usage.output_tokens": 60,
            },
            name="invoke_agent",
        ),
        span(2, chat(100, 20, **{"gen_ai.conversation.id": "conv-1"}), parent=1, end_ms=500),
        span(3, chat(200, 40), parent=1, end_ms=900),
        span(4, {"http.method": "POST"}, parent=2, name="POST"),
        span(5, chat(-1, 5), trace=2),
    )
    result = _ingest(Ingestor(tracker), body)
    assert result == {
        "spans": 5,
        "recorded": 3,
        "unknown": 1,
        "duplicates": 0,
        "in_process": 0,
        "aggregates": 1,
        "no_usage": 1,
        "untimed": 0,
        "held": 0,
        "released": 0,
    }
    records = {r.usage.input_tokens: r for r in tracker.history()}
    first, second = records[100], records[200]
    assert first.usage == Usage(100, 20)
    assert (first.agent, first.session, first.model, first.provider) == (
        "researcher",
        "conv-1",
        "gpt-4o-mini",
        "openai",
    )
    assert second.session == f"{1:032x}"  # no conversation id: the trace
    assert first.tags == (TAG,)
    assert first.timestamp_us == (BASE_NS + 500 * 1_000_000) // 1000
    assert first.duration_ms == 250.0
    assert first.cost == tt.price(Usage(100, 20), "gpt-4o-mini", "openai").total
    assert first.id == span_record_id(
        bytes.fromhex(f"{1:032x}"), bytes.fromhex(f"{2:016x}"), first.timestamp_us
    )
    unknown = records[0]
    assert unknown.usage.status is UsageStatus.UNKNOWN and "negative" in (unknown.usage.reason or "")
    assert tracker.totals().calls == 3


def test_a_retried_export_writes_nothing_twice_also_after_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    body = export(
        span(1, chat(100, 20)), span(2, chat(50, 5), end_ms=2000), span(3, chat(7, 1), end_ms=900_000)
    )
    seen: list[tt.Record] = []
    tracker = tt.Tracker(url, sinks=[seen.append])
    ingestor = Ingestor(tracker)
    assert _ingest(ingestor, body)["recorded"] == 3
    assert _ingest(ingestor, body)["duplicates"] == 3  # the exporter retried
    tracker.close()
    restarted: list[tt.Record] = []
    tracker = tt.Tracker(url, sinks=[restarted.append])
    result = _ingest(Ingestor(tracker), body)  # a new process: nothing in memory, the ledger knows
    assert (result["recorded"], result["duplicates"]) == (0, 3)
    assert restarted == [] and len(seen) == 3  # sinks (budgets, metrics) never saw a duplicate
    totals = tracker.totals()
    assert (totals.calls, totals.input_tokens) == (3, 157)
    tracker.close()


def test_budgets_count_a_span_once() -> None:
    budget = tt.Budget(limit_tokens=10_000_000, window="session", scope={"agent": "a"})
    tracker = tt.Tracker(budgets=[budget])
    # a session budget counts recent spend: the span ended now (budgets read the record's time)
    attributes = chat(1_000_000, 0, **{"gen_ai.agent.name": "a", "gen_ai.conversation.id": "c"})
    body = export(span(1, attributes, end_ns=time.time_ns()))
    ingestor = Ingestor(tracker)
    _ingest(ingestor, body)
    _ingest(ingestor, body)
    assert tracker.totals().calls == 1
    (status,) = tracker.budget_status()
    assert status.spent_tokens == 1_000_000


def test_duplicates_inside_one_export_and_in_process_calls() -> None:
    tracker = tt.Tracker()
    body = export(span(1, chat()), span(1, chat()), span(2, chat(**{"tokentrail.recorded": True})))
    result = _ingest(Ingestor(tracker), body)
    assert (result["recorded"], result["duplicates"], result["in_process"]) == (1, 1, 1)
    assert tracker.totals().calls == 1


def test_ancestors_from_an_earlier_export() -> None:
    tracker = tt.Tracker()
    ingestor = Ingestor(tracker)
    _ingest(
        ingestor, export(span(1, {"openinference.span.kind": "AGENT", "session.id": "s"}, name="planner"))
    )
    _ingest(
        ingestor,
        export(
            span(
                2,
                {
                    "openinference.span.kind": "LLM",
                    "llm.token_count.prompt": 3,
                    "llm.token_count.completion": 1,
                    "llm.model_name": "gpt-4o",
                },
                parent=1,
            )
        ),
    )
    (record,) = tracker.history()
    assert (record.agent, record.session) == ("planner", "s")
