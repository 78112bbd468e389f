// The OpenTelemetry JS SDK exporting GenAI spans to tokentrail's OTLP endpoint
// (tests/ingest/test_node_emitters.py) with @opentelemetry/exporter-trace-otlp-http (OTLP/JSON over
// HTTP, as the package sends by default) through a BatchSpanProcessor. Each run makes an invoke_agent
// span around CALLS chat spans carrying GenAI semantic-convention attributes, exports them, exports the
// same spans once more (a retry), and prints the usage it put on the spans as JSON.
//
//   OTLP_URL=http://127.0.0.1:4318/v1/traces CALLS=3 node otel_export.mjs
import { trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";

const exporter = new OTLPTraceExporter({ url: process.env.OTLP_URL });
const memory = new InMemorySpanExporter();
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ "service.name": "node-agents" }),
  spanProcessors: [new BatchSpanProcessor(exporter), new SimpleSpanProcessor(memory)],
});
provider.register();
const tracer = trace.getTracer("node-agents");
const calls = [];

tracer.startActiveSpan("invoke_agent planner", (agent) => {
  agent.setAttribute("gen_ai.operation.name", "invoke_agent");
  agent.setAttribute("gen_ai.agent.name", "planner");
  agent.setAttribute("gen_ai.conversation.id", "node-conv");
  for (let n = 0; n < Number(process.env.CALLS || 3); n++) {
    const usage = { input: 1000 + n, output: 50 + n, cacheRead: 512, reasoning: 10 };
    tracer.startActiveSpan("chat gpt-4o-mini", (span) => {
      span.setAttributes({
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": usage.input,
        "gen_ai.usage.output_tokens": usage.output,
        "gen_ai.usage.cache_read.input_tokens": usage.cacheRead,
        "gen_ai.usage.reasoning.output_tokens": usage.reasoning,
      });
      span.end();
    });
    calls.push(usage);
  }
  agent.end();
});
await provider.forceFlush();

// the same spans exported again, as an exporter retrying after a lost response would
const retried = await new Promise((resolve) => exporter.export(memory.getFinishedSpans(), resolve));
await provider.shutdown();
console.log(JSON.stringify({ calls, retry: retried.code }));
