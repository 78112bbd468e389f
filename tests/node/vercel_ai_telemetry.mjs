// The Vercel AI SDK (`ai` + `@ai-sdk/openai`) with its telemetry on (experimental_telemetry), calling the
// mock LLM server's OpenAI routes, its spans exported by @opentelemetry/exporter-trace-otlp-http to
// tokentrail's OTLP endpoint (tests/ingest/test_node_emitters.py): generateText and streamText through
// the provider's default model (the Responses API) and through `openai.chat` (Chat Completions).
// Prints, as JSON, the usage the SDK reports for each call.
//
//   OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 OTLP_URL=http://127.0.0.1:4318/v1/traces node vercel_ai_telemetry.mjs
import { createOpenAI } from "@ai-sdk/openai";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { generateText, streamText } from "ai";

const provider = new NodeTracerProvider({
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: process.env.OTLP_URL }))],
});
provider.register();

const openai = createOpenAI({ baseURL: process.env.OPENAI_BASE_URL, apiKey: "sk-test" });
const prompt = "Count the tokens of this sentence.";
const telemetry = { isEnabled: true, functionId: "writer", metadata: { sessionId: "vercel-session", userId: "ann" } };
const calls = [];

function report(call, usage) {
  calls.push({
    call,
    input: usage.inputTokens,
    output: usage.outputTokens,
    cacheRead: usage.inputTokenDetails?.cacheReadTokens ?? 0,
    reasoning: usage.outputTokenDetails?.reasoningTokens ?? 0,
  });
}

for (const [api, model] of [
  ["responses", openai("gpt-4o-mini")],
  ["chat", openai.chat("gpt-4o-mini")],
]) {
  const generated = await generateText({ model, prompt, maxRetries: 0, experimental_telemetry: telemetry });
  report(`${api}.generateText`, generated.usage);

  const streamed = streamText({
    model,
    prompt,
    maxRetries: 0,
    experimental_telemetry: telemetry,
    onError: ({ error }) => {
      throw error;
    },
  });
  for await (const _ of streamed.textStream) {
    // read to the end
  }
  report(`${api}.streamText`, await streamed.usage);
}

await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify(calls));
