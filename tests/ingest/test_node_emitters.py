"""Node emitters into the OTLP endpoint: the OpenTelemetry JS exporter (OTLP/JSON) and the Vercel AI SDK
with its telemetry on against the mock server, each run with the machine's Node and the packages locked
in tests/node/package-lock.json."""

from __future__ import annotations

import json

import tokentrail as tt
from tests.ingest.conftest import serve
from tests.nodejs import run_node
from tokentrail import Usage
from tokentrail.ingest.app import collector_app
from tokentrail.testing.mock_llm import MockLLMServer


def test_opentelemetry_js_exporter() -> None:
    tracker = tt.Tracker()
    app = collector_app(tracker)
    with serve(app) as served:
        out = json.loads(
            run_node("otel_export.mjs", env={"OTLP_URL": f"{served.url}/v1/traces", "CALLS": "3"}).stdout
        )
    assert out["retry"] == 0  # the retried export was answered 200 too
    records = sorted(tracker.history(), key=lambda r: r.usage.input_tokens)
    assert [r.usage for r in records] == [
        Usage(c["input"], c["output"], cache_read_tokens=c["cacheRead"], reasoning_tokens=c["reasoning"])
        for c in out["calls"]
    ]
    assert {(r.agent, r.session, r.model) for r in records} == {("planner", "node-conv", "gpt-4o-mini")}
    totals = app.traces.ingestor.totals
    assert (totals.recorded, totals.duplicates) == (3, 3)


def test_vercel_ai_sdk_telemetry() -> None:
    tracker = tt.Tracker()
    app = collector_app(tracker)
    with MockLLMServer() as mock, serve(app) as served:
        env = {"OPENAI_BASE_URL": mock.url("openai"), "OTLP_URL": f"{served.url}/v1/traces"}
        calls = json.loads(run_node("vercel_ai_telemetry.mjs", env=env).stdout)
        made = [r for r in mock.requests if r["path"].endswith(("/responses", "/chat/completions"))]
    records = tracker.history()
    assert len(records) == len(made) == len(calls) == 4
    got = sorted(
        (r.usage.input_tokens, r.usage.output_tokens, r.usage.cache_read_tokens, r.usage.reasoning_tokens)
        for r in records
    )
    assert got == sorted((c["input"], c["output"], c["cacheRead"], c["reasoning"]) for c in calls)
    assert {(r.agent, r.session, r.user, r.provider) for r in records} == {
        ("writer", "vercel-session", "ann", "openai")
    }
    assert all(r.priced for r in records)
    assert app.traces.ingestor.totals.aggregates == 4  # the outer ai.generateText / ai.streamText spans
