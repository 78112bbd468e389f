// The Node `openai` package against the tokentrail gateway (tests/gateway/test_node_clients.py): chat,
// streamed chat (with and without stream_options.include_usage), Responses plain and streamed. Prints, as
// JSON, the usage the client itself reports for each call (null when the client was shown none).
//
//   GATEWAY_URL=http://127.0.0.1:4000 API_KEY=ttk-… TT_HEADERS='{"X-Tokentrail-Agent":"a"}' node gateway_openai.mjs
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: `${process.env.GATEWAY_URL}/v1`,
  apiKey: process.env.API_KEY,
  maxRetries: 0,
  defaultHeaders: JSON.parse(process.env.TT_HEADERS || "{}"),
});
const model = "gpt-4o-mini";
const messages = [{ role: "user", content: "Count the tokens of this sentence." }];
const calls = [];

const chat = await client.chat.completions.create({ model, messages });
calls.push({ call: "chat", input: chat.usage.prompt_tokens, output: chat.usage.completion_tokens });

let usage = null;
let text = "";
const asked = await client.chat.completions.create({
  model,
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of asked) {
  text += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
calls.push({ call: "chat.stream", input: usage.prompt_tokens, output: usage.completion_tokens, text });

usage = null;
let chunks = 0;
const plain = await client.chat.completions.create({ model, messages, stream: true });
for await (const chunk of plain) {
  chunks += 1;
  if (chunk.usage) usage = chunk.usage;
}
calls.push({ call: "chat.stream.unasked", usage, chunks });

const response = await client.responses.create({ model, input: "Hello" });
calls.push({ call: "responses", input: response.usage.input_tokens, output: response.usage.output_tokens });

const stream = client.responses.stream({ model, input: "Hello again" });
const final = await stream.finalResponse();
calls.push({ call: "responses.stream", input: final.usage.input_tokens, output: final.usage.output_tokens });

console.log(JSON.stringify(calls));
