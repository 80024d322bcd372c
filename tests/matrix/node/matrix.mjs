// One Node client of the client matrix (tests/matrix) against a running gateway.
//
// usage: node matrix.mjs CLIENT < profile.json
// The profile (JSON on stdin) names the gateway, a key, and the model of each operation
// ({"base_url", "key", "bad_key", "ops": {"text": "echo", ...}, "prompt", "tool"}).
// Prints ONE JSON object on stdout: operation -> {"ok": true, ...what the client reported}
// or {"ok": false, "error": {"name", "status", "message"}}. The Python side asserts on it,
// so one node process runs every operation of one client.
import OpenAI from "openai";
import { generateText, streamText, stepCountIs, tool, jsonSchema } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";

// Its warnings (an unknown model's default max tokens) would only clutter the test log.
globalThis.AI_SDK_LOG_WARNINGS = false;

const client = process.argv[2];
const profile = JSON.parse(await readStdin());
const TOOL = profile.tool; // {name, description, parameters (JSON schema)}
const toolOutput = (args) => `sunny in ${args.city ?? "?"}`;

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

function failure(error) {
  return {
    ok: false,
    error: {
      // The AI SDK's errors name themselves (AI_APICallError); openai-node's by class.
      name: error?.name?.startsWith("AI_") ? error.name : (error?.constructor?.name ?? typeof error),
      status: error?.status ?? error?.statusCode ?? null,
      message: String(error?.message ?? error).slice(0, 500),
      cause: error?.cause ? String(error.cause.message ?? error.cause).slice(0, 500) : null,
    },
  };
}

// ---- openai-node --------------------------------------------------------------------

function openaiClient(key) {
  return new OpenAI({ baseURL: `${profile.base_url}/v1`, apiKey: key, maxRetries: 0, timeout: 20000 });
}

const openaiChat = {
  async text(model, key = profile.key) {
    const r = await openaiClient(key).chat.completions.create({
      model,
      messages: [{ role: "user", content: profile.prompt }],
    });
    return { text: r.choices[0].message.content, finish: r.choices[0].finish_reason };
  },
  async stream(model) {
    const stream = await openaiClient(profile.key).chat.completions.create({
      model,
      messages: [{ role: "user", content: profile.prompt }],
      stream: true,
    });
    let text = "";
    let chunks = 0;
    for await (const chunk of stream) {
      chunks += 1;
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    return { text, chunks };
  },
  async tools(model) {
    const openai = openaiClient(profile.key);
    const tools = [{ type: "function", function: TOOL }];
    const messages = [{ role: "user", content: profile.prompt }];
    const calls = [];
    for (let turn = 0; turn < 4; turn++) {
      const r = await openai.chat.completions.create({ model, messages, tools });
      const message = r.choices[0].message;
      if (!message.tool_calls?.length) return { calls, text: message.content };
      messages.push(message);
      for (const call of message.tool_calls) {
        const args = JSON.parse(call.function.arguments);
        calls.push({ name: call.function.name, args });
        messages.push({ role: "tool", tool_call_id: call.id, content: toolOutput(args) });
      }
    }
    throw new Error("the tool loop did not end");
  },
  async reasoning(model) {
    const r = await openaiClient(profile.key).chat.completions.create({
      model,
      messages: [{ role: "user", content: profile.prompt }],
    });
    const message = r.choices[0].message;
    return { text: message.content, reasoning: message.reasoning_content ?? null };
  },
  async reasoning_stream(model) {
    const stream = await openaiClient(profile.key).chat.completions.create({
      model,
      messages: [{ role: "user", content: profile.prompt }],
      stream: true,
    });
    let text = "";
    let reasoning = "";
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      reasoning += chunk.choices[0]?.delta?.reasoning_content ?? "";
    }
    return { text, reasoning };
  },
  async usage(model) {
    const r = await openaiClient(profile.key).chat.completions.create({
      model,
      messages: [{ role: "user", content: profile.prompt }],
    });
    const u = r.usage;
    return { input: u.prompt_tokens, output: u.completion_tokens, total: u.total_tokens };
  },
  async usage_stream(model) {
    const stream = await openaiClient(profile.key).chat.completions.create({
      model,
      messages: [{ role: "user", content: profile.prompt }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let u = null;
    for await (const chunk of stream) if (chunk.usage) u = chunk.usage;
    return { input: u.prompt_tokens, output: u.completion_tokens, total: u.total_tokens };
  },
  error_auth: (model) => openaiChat.text(model, profile.bad_key),
  error_model: (model) => openaiChat.text(model),
  error_upstream: (model) => openaiChat.text(model),
};

const openaiResponses = {
  async text(model, key = profile.key) {
    const r = await openaiClient(key).responses.create({ model, input: profile.prompt });
    return { text: r.output_text, status: r.status };
  },
  async stream(model) {
    const stream = openaiClient(profile.key).responses.stream({ model, input: profile.prompt });
    let text = "";
    let events = 0;
    for await (const event of stream) {
      events += 1;
      if (event.type === "response.output_text.delta") text += event.delta;
    }
    const final = await stream.finalResponse();
    return { text, final_text: final.output_text, events };
  },
  async tools(model) {
    const openai = openaiClient(profile.key);
    const tools = [{ type: "function", ...TOOL }];
    let input = [{ role: "user", content: profile.prompt }];
    const calls = [];
    for (let turn = 0; turn < 4; turn++) {
      const r = await openai.responses.create({ model, input, tools });
      const fcalls = r.output.filter((item) => item.type === "function_call");
      if (!fcalls.length) return { calls, text: r.output_text };
      input = [...input, ...r.output];
      for (const call of fcalls) {
        const args = JSON.parse(call.arguments);
        calls.push({ name: call.name, args });
        input.push({ type: "function_call_output", call_id: call.call_id, output: toolOutput(args) });
      }
    }
    throw new Error("the tool loop did not end");
  },
  async reasoning(model) {
    const r = await openaiClient(profile.key).responses.create({ model, input: profile.prompt });
    const reasoning = r.output
      .filter((item) => item.type === "reasoning")
      .flatMap((item) => [...(item.summary ?? []), ...(item.content ?? [])].map((part) => part.text))
      .join("");
    return { text: r.output_text, reasoning };
  },
  async reasoning_stream(model) {
    const stream = openaiClient(profile.key).responses.stream({ model, input: profile.prompt });
    let reasoning = "";
    let text = "";
    for await (const event of stream) {
      if (
        event.type === "response.reasoning_summary_text.delta" ||
        event.type === "response.reasoning_text.delta"
      )
        reasoning += event.delta;
      if (event.type === "response.output_text.delta") text += event.delta;
    }
    await stream.finalResponse();
    return { text, reasoning };
  },
  async usage(model) {
    const r = await openaiClient(profile.key).responses.create({ model, input: profile.prompt });
    const u = r.usage;
    return {
      input: u.input_tokens,
      output: u.output_tokens,
      total: u.total_tokens,
      reasoning: u.output_tokens_details?.reasoning_tokens ?? null,
    };
  },
  async usage_stream(model) {
    const stream = openaiClient(profile.key).responses.stream({ model, input: profile.prompt });
    for await (const _ of stream);
    const u = (await stream.finalResponse()).usage;
    return { input: u.input_tokens, output: u.output_tokens, total: u.total_tokens };
  },
  error_auth: (model) => openaiResponses.text(model, profile.bad_key),
  error_model: (model) => openaiResponses.text(model),
  error_upstream: (model) => openaiResponses.text(model),
};

// ---- the Vercel AI SDK --------------------------------------------------------------

function aiModel(model, key = profile.key) {
  if (client === "ai-anthropic") {
    return createAnthropic({ baseURL: `${profile.base_url}/v1`, apiKey: key })(model);
  }
  const provider = createOpenAI({ baseURL: `${profile.base_url}/v1`, apiKey: key });
  return client === "ai-openai-chat" ? provider.chat(model) : provider.responses(model);
}

function aiUsage(u) {
  return {
    input: u.inputTokens ?? null,
    output: u.outputTokens ?? null,
    total: u.totalTokens ?? null,
    reasoning: u.outputTokenDetails?.reasoningTokens ?? u.reasoningTokens ?? null,
  };
}

const aiTools = () => ({
  [TOOL.name]: tool({
    description: TOOL.description,
    inputSchema: jsonSchema(TOOL.parameters),
    execute: async (args) => toolOutput(args),
  }),
});

const aiSdk = {
  async text(model, key = profile.key) {
    const r = await generateText({ model: aiModel(model, key), prompt: profile.prompt, maxRetries: 0 });
    return { text: r.text, finish: r.finishReason };
  },
  async stream(model) {
    let streamError = null;
    const r = streamText({
      model: aiModel(model),
      prompt: profile.prompt,
      maxRetries: 0,
      onError: ({ error }) => {
        streamError = error;
      },
    });
    let text = "";
    let chunks = 0;
    for await (const delta of r.textStream) {
      chunks += 1;
      text += delta;
    }
    if (streamError) throw streamError;
    return { text, chunks, finish: await r.finishReason };
  },
  async tools(model) {
    const r = await generateText({
      model: aiModel(model),
      prompt: profile.prompt,
      tools: aiTools(),
      stopWhen: stepCountIs(4),
      maxRetries: 0,
    });
    const calls = r.steps.flatMap((step) =>
      step.toolCalls.map((call) => ({ name: call.toolName, args: call.input })),
    );
    return { calls, text: r.text, steps: r.steps.length };
  },
  async reasoning(model) {
    const r = await generateText({ model: aiModel(model), prompt: profile.prompt, maxRetries: 0 });
    return { text: r.text, reasoning: r.reasoningText ?? null };
  },
  async reasoning_stream(model) {
    let streamError = null;
    const r = streamText({
      model: aiModel(model),
      prompt: profile.prompt,
      maxRetries: 0,
      onError: ({ error }) => {
        streamError = error;
      },
    });
    let text = "";
    let reasoning = "";
    for await (const part of r.fullStream) {
      if (part.type === "text-delta") text += part.text;
      if (part.type === "reasoning-delta") reasoning += part.text;
    }
    if (streamError) throw streamError;
    return { text, reasoning };
  },
  async usage(model) {
    const r = await generateText({ model: aiModel(model), prompt: profile.prompt, maxRetries: 0 });
    return aiUsage(r.usage);
  },
  async usage_stream(model) {
    let streamError = null;
    const r = streamText({
      model: aiModel(model),
      prompt: profile.prompt,
      maxRetries: 0,
      onError: ({ error }) => {
        streamError = error;
      },
    });
    for await (const _ of r.textStream);
    if (streamError) throw streamError;
    return aiUsage(await r.usage);
  },
  error_auth: (model) => aiSdk.text(model, profile.bad_key),
  error_model: (model) => aiSdk.text(model),
  error_upstream: (model) => aiSdk.text(model),
};

const CLIENTS = {
  "openai-chat": openaiChat,
  "openai-responses": openaiResponses,
  "ai-openai-chat": aiSdk,
  "ai-openai-responses": aiSdk,
  "ai-anthropic": aiSdk,
};

const operations = CLIENTS[client];
if (!operations) {
  console.error(`unknown client ${client}; one of ${Object.keys(CLIENTS).join(", ")}`);
  process.exit(2);
}
const results = {};
for (const [op, model] of Object.entries(profile.ops)) {
  try {
    results[op] = { ok: true, ...(await operations[op](model)) };
  } catch (error) {
    results[op] = failure(error);
  }
}
process.stdout.write(JSON.stringify(results) + "\n");
