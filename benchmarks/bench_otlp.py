"""OTLP ingest: spans per second from OTLP/HTTP protobuf export bodies into the SQLite ledger, against a
plain `json.loads` + per-span insert baseline measured in the same run.

python benchmarks/bench_otlp.py [--batches 40] [--rounds 3]

The spans are made by the real OpenTelemetry Python SDK (chat spans with the attributes
opentelemetry-instrumentation-openai-v2 writes, a 300-character prompt attribute the reader skips,
inside invoke_agent spans naming the agent and conversation) and encoded by the real exporter's encoder
(`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`) in batches of 512 spans, the
BatchSpanProcessor's default export size. Each round ingests every batch into a fresh ledger file:

- tokentrail: `decode_protobuf` + `Ingestor.ingest` per batch (the endpoint's work without the socket:
  read, dedup lookup, price, attribute, record, flush to the file before answering);
- baseline: the same spans as OTLP/JSON bodies, `json.loads`, each span's attributes read by a plain
  loop, and each span written by its own insert — `tracker.record` on a durable SQLite store, one
  transaction per span (same pricing, same ledger).

Goal (issue 19): ≥ 20,000 spans/s, ≥ 5× the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail as tt
from _timing import machine
from tokentrail.ingest.otlp import decode_protobuf
from tokentrail.ingest.records import Ingestor
from tokentrail.stores.sqlite import SQLiteStore

BATCH = 512
MODELS = ["gpt-4o-mini", "gpt-4o", "o3-mini"]
PROMPT = "Summarize the following quarterly report in three bullet points. " * 5


def make_batches(batches: int) -> list[bytes]:
    """`batches` protobuf bodies of 512 spans each (one agent span per 15 chat spans), as exported."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    made = 0
    n = 0
    while made < batches * BATCH:
        with tracer.start_as_current_span("invoke_agent") as agent:
            agent.set_attribute("gen_ai.operation.name", "invoke_agent")
            agent.set_attribute("gen_ai.agent.name", f"agent-{n % 20}")
            agent.set_attribute("gen_ai.conversation.id", f"conv-{n % 200}")
            for i in range(15):
                with tracer.start_as_current_span("chat") as span:
                    span.set_attributes(
                        {
                            "gen_ai.operation.name": "chat",
                            "gen_ai.provider.name": "openai",
                            "gen_ai.request.model": MODELS[i % 3],
                            "gen_ai.response.model": MODELS[i % 3],
                            "gen_ai.response.id": f"chatcmpl-{n}-{i}",
                            "gen_ai.response.finish_reasons": ("stop",),
                            "gen_ai.request.temperature": 0.2,
                            "server.address": "api.openai.com",
                            "server.port": 443,
                            "gen_ai.usage.input_tokens": 1000 + i,
                            "gen_ai.usage.output_tokens": 100 + i,
                            "gen_ai.input.messages": PROMPT,
                        }
                    )
        made += 16
        n += 1
    spans = memory.get_finished_spans()[: batches * BATCH]
    return [encode_spans(spans[i : i + BATCH]).SerializeToString() for i in range(0, len(spans), BATCH)]


CPU: list[float] = []  # process CPU seconds of each tokentrail round (a loaded machine inflates wall time)


def run_tokentrail(bodies: list[bytes], path: Path) -> tuple[float, int]:
    tracker = tt.Tracker(f"sqlite:///{path}")
    ingestor = Ingestor(tracker)
    start, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        ingestor.ingest(decode_protobuf(body))
    tracker.flush()
    elapsed = time.perf_counter() - start
    CPU.append(time.process_time() - cpu)
    calls = tracker.totals().calls
    tracker.close()
    return elapsed, calls


def run_baseline(bodies: list[bytes], path: Path) -> tuple[float, int]:
    tracker = tt.Tracker(SQLiteStore(path, durable=True))
    start = time.perf_counter()
    for body in bodies:
        request = json.loads(body)
        for resource in request["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    attributes = {}
                    for pair in span.get("attributes", []):
                        value = pair["value"]
                        attributes[pair["key"]] = value.get("intValue", value.get("stringValue"))
                    if "gen_ai.usage.input_tokens" not in attributes:
                        continue
                    tracker.record(
                        tt.Usage(
                            int(attributes["gen_ai.usage.input_tokens"]),
                            int(attributes["gen_ai.usage.output_tokens"]),
                        ),
                        model=attributes.get("gen_ai.response.model"),
                        provider=attributes.get("gen_ai.provider.name"),
                    )
    elapsed = time.perf_counter() - start
    calls = tracker.totals().calls
    tracker.close()
    return elapsed, calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    bodies = make_batches(args.batches)
    json_bodies = [json.dumps(MessageToDict(_request(body))).encode() for body in bodies]
    spans = len(bodies) * BATCH  # every span is read; the chat spans (15 in 16) become records
    print(
        f"{len(bodies)} protobuf batches of {BATCH} spans ({sum(map(len, bodies)) // len(bodies):,} bytes each)"
    )
    best_ours = best_base = float("inf")
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            ours, recorded = run_tokentrail(bodies, Path(folder) / f"ours-{round_}.db")
            base, based = run_baseline(json_bodies, Path(folder) / f"base-{round_}.db")
            assert recorded == based, (recorded, based)
            best_ours, best_base = min(best_ours, ours), min(best_base, base)
            print(
                f"round {round_ + 1}: tokentrail {spans / ours:,.0f} spans/s ({spans / CPU[-1]:,.0f} per CPU second), "
                f"baseline {spans / base:,.0f} spans/s ({recorded:,} records each)"
            )
    print(
        f"best: tokentrail {spans / best_ours:,.0f} spans/s (goal ≥ 20,000), "
        f"baseline {spans / best_base:,.0f} spans/s, ratio {best_base / best_ours:.1f}× (goal ≥ 5×)"
    )


def _request(body: bytes) -> object:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


if __name__ == "__main__":
    print(machine())
    main()
