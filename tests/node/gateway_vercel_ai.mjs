// The Vercel AI SDK (`ai` + `@ai-sdk/openai`) against the tokentrail gateway
// (tests/gateway/test_node_clients.py): generateText and streamText through the provider's default model
// (the Responses API in @ai-sdk/openai 3) and through `openai.chat` (Chat Completions, which the SDK
// streams with stream_options.include_usage). Prints, as JSON, the usage the SDK reports for each call.
//
//   GATEWAY_URL=http://127.0.0.1:4000 API_KEY=ttk-… TT_HEADERS='{"X-Tokentrail-User":"u"}' node gateway_vercel_ai.mjs
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";

const openai = createOpenAI({
  baseURL: `${process.env.GATEWAY_URL}/v1`,
  apiKey: process.env.API_KEY,
  headers: JSON.parse(process.env.TT_HEADERS || "{}"),
});
const prompt = "Count the tokens of this sentence.";
const calls = [];

function report(call, usage, text) {
  calls.push({ call, input: usage.inputTokens, output: usage.outputTokens, text });
}

for (const [api, model] of [
  ["responses", openai("gpt-4o-mini")],
  ["chat", openai.chat("gpt-4o-mini")],
]) {
  const generated = await generateText({ model, prompt, maxRetries: 0 });
  report(`${api}.generateText`, generated.usage, generated.text);

  const streamed = streamText({ model, prompt, maxRetries: 0, onError: ({ error }) => { throw error; } });
  let text = "";
  for await (const part of streamed.textStream) text += part;
  report(`${api}.streamText`, await streamed.usage, text);
}

console.log(JSON.stringify(calls));
