"""Call spans that arrive before their agent's span (the real SDK's SimpleSpanProcessor exports each span
when it ends: children first) are held until the ancestors arrive, then recorded once with the agent,
session and user those name; held past their deadline (an injected clock, no sleeping), beyond the
limit or at shutdown they are recorded with what is known; a journal keeps them across a crash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import tokentrail as tt
from tests.ingest.conftest import Served, serve
from tests.ingest.otlp_json import chat, export, span
from tokentrail.ingest.app import collector_app
from tokentrail.ingest.held import JournalInUse
from tokentrail.ingest.otlp import decode_json
from tokentrail.ingest.records import Ingestor


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def collector(clock: Clock) -> Iterator[tuple[tt.Tracker, Ingestor, Served]]:
    tracker = tt.Tracker()
    ingestor = Ingestor(tracker, clock=clock, hold_seconds=60)
    with serve(collector_app(ingestor)) as served:
        yield tracker, ingestor, served
    ingestor.close()


def _simple(served: Served) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{served.url}/v1/traces")))
    return provider


def _set(span: trace.Span, attributes: dict[str, object]) -> None:
    for key, value in attributes.items():
        span.set_attribute(key, value)  # type: ignore[arg-type]


def test_simple_span_processor_children_before_their_agent(
    collector: tuple[tt.Tracker, Ingestor, Served],
) -> None:
    tracker, ingestor, served = collector
    provider = _simple(served)
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("run") as run:
        run.set_attribute("user.id", "ann")
        with tracer.start_as_current_span("invoke_agent researcher") as agent:
            _set(agent, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"})
            agent.set_attribute("gen_ai.conversation.id", "conv-1")
            for n in range(2):
                with tracer.start_as_current_span("chat gpt-4o-mini") as call:
                    _set(call, chat(100 + n, 10))
            # both calls were exported, one export each; their agent has not ended yet
            assert tracker.history() == []
            assert (ingestor.totals.held, len(ingestor.held)) == (2, 2)
        # the agent span arrived: it names agent and session; the user is named higher up, still unknown
        assert tracker.history() == [] and len(ingestor.held) == 2
    # the root arrived: both calls recorded, once, with everything the line above them names
    records = sorted(tracker.history(), key=lambda r: r.usage.input_tokens)
    assert [(r.usage.input_tokens, r.agent, r.session, r.user) for r in records] == [
        (100, "researcher", "conv-1", "ann"),
        (101, "researcher", "conv-1", "ann"),
    ]
    totals = ingestor.totals
    assert (totals.spans, totals.recorded, totals.released, totals.held, len(ingestor.held)) == (
        4,
        2,
        2,
        2,
        0,
    )
    provider.shutdown()


def test_a_parent_that_never_arrives_is_waited_for_until_the_deadline(
    clock: Clock, collector: tuple[tt.Tracker, Ingestor, Served]
) -> None:
    tracker, ingestor, served = collector
    provider = _simple(served)
    tracer = provider.get_tracer("app")
    # the parent lives in another service, which exports elsewhere: its span never comes here
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with tracer.start_as_current_span(
        "chat", context=trace.set_span_in_context(NonRecordingSpan(remote))
    ) as s:
        _set(s, chat(7, 3, **{"gen_ai.agent.name": "summarizer"}))
    exported = _one_export(s)
    assert ingestor.ingest(decode_json(exported)).duplicates == 1  # re-exported while held: held once
    clock.now += 59.9
    assert ingestor.release_due().recorded == 0 and tracker.history() == []
    clock.now += 0.2
    assert ingestor.release_due().recorded == 1
    (record,) = tracker.history()
    assert (record.agent, record.session, record.usage.input_tokens) == ("summarizer", f"{0xABC:032x}", 7)
    assert ingestor.ingest(decode_json(exported)).duplicates == 1  # and after it was recorded
    assert ingestor.totals.recorded == 1
    provider.shutdown()


def _one_export(ended: object) -> bytes:
    """The OTLP/JSON export of the span the SDK just ended (as the JS exporter would send it)."""
    context = ended.get_span_context()  # type: ignore[attr-defined]
    parent = ended.parent  # type: ignore[attr-defined]
    attributes = dict(ended.attributes)  # type: ignore[attr-defined]
    body = span(context.span_id, attributes, trace=context.trace_id, parent=parent.span_id)
    body["startTimeUnixNano"] = str(ended.start_time)  # type: ignore[attr-defined]
    body["endTimeUnixNano"] = str(ended.end_time)  # type: ignore[attr-defined]
    return export(body)


def test_the_limit_and_shutdown_record_what_is_held(clock: Clock) -> None:
    tracker = tt.Tracker()
    ingestor = Ingestor(tracker, clock=clock, hold_limit=2)
    for n in range(1, 4):  # three calls whose parent (span 99) has not arrived
        ingestor.ingest(decode_json(export(span(n, chat(n, 1), parent=99))))
    assert [r.usage.input_tokens for r in tracker.history()] == [1]  # the oldest, beyond the limit
    assert ingestor.close().recorded == 2
    assert sorted(r.usage.input_tokens for r in tracker.history()) == [1, 2, 3]
    assert {r.agent for r in tracker.history()} == {None}
    # closed: a later export is recorded at once, whatever its ancestors
    assert ingestor.ingest(decode_json(export(span(5, chat(5, 1), parent=98)))).recorded == 1


def test_no_holding() -> None:
    tracker = tt.Tracker()
    ingestor = Ingestor(tracker, hold_seconds=0)
    assert ingestor.ingest(decode_json(export(span(1, chat(), parent=99)))).recorded == 1


def test_the_journal_keeps_held_spans_across_a_crash(tmp_path: Path, clock: Clock) -> None:
    url, journal = f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "held.jsonl"
    tracker = tt.Tracker(url)
    first = Ingestor(tracker, clock=clock, journal=journal)
    child = export(span(2, chat(40, 4), parent=1), span(3, chat(50, 5), parent=1))
    assert first.ingest(decode_json(child)).held == 2  # the exporter is told 200: they must not be lost
    with pytest.raises(JournalInUse):
        Ingestor(tracker, journal=journal)  # one process holds spans in a journal at a time
    first.held.close()  # killed: nothing recorded, the journal is left as it was
    tracker.close()

    tracker = tt.Tracker(url)
    second = Ingestor(tracker, clock=clock, journal=journal)
    assert len(second.held) == 2 and tracker.history() == []
    agent = export(span(1, {"gen_ai.agent.name": "planner", "gen_ai.conversation.id": "c"}, name="agent"))
    assert second.ingest(decode_json(agent)).recorded == 2
    assert {(r.agent, r.session) for r in tracker.history()} == {("planner", "c")}
    second.close()

    # a crash after the records were written but before their release was journaled: written again,
    # which the store ignores (the same record ids)
    journal.write_text(
        '{"h":["00000000000000000000000000000001","0000000000000002","0000000000000001","chat",'
        '1767225600750000000,1767225601000000000,{"gen_ai.usage.input_tokens":40,'
        '"gen_ai.usage.output_tokens":4,"gen_ai.request.model":"gpt-4o-mini"}]}\n'
    )
    third = Ingestor(tracker, clock=clock, journal=journal)
    assert len(third.held) == 1
    closed = third.close()
    assert (closed.recorded, closed.duplicates, closed.released) == (0, 1, 1)
    assert tracker.totals().calls == 2
    assert Ingestor(tracker, journal=journal).held.__len__() == 0  # released: the journal is empty
    tracker.close()
