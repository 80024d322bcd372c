// The A2A door driven by the official Node SDK (@a2a-js/sdk): tests/integration/test_a2a_node.py.
//
// usage: node a2a.mjs < {"base_url", "key", "agent", "slow_agent"}
// Resolves the agent's card, then: a streamed message, a blocking one, a second turn in
// the same context, get, list, a stream dropped and resubscribed, a cancel. Prints ONE
// JSON object of what the SDK returned, for the Python side to assert on.
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } from "@a2a-js/sdk/client";
import { Role, TaskState } from "@a2a-js/sdk";

const profile = JSON.parse(await readStdin());

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

// The gateway's key on every request the SDK makes, the card's included.
const authed = (input, init = {}) => {
  const headers = new Headers(init.headers ?? {});
  headers.set("Authorization", `Bearer ${profile.key}`);
  return fetch(input, { ...init, headers });
};

async function client(agent) {
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [new JsonRpcTransportFactory({ fetchImpl: authed })],
      cardResolver: new DefaultAgentCardResolver({ fetchImpl: authed }),
    }),
  );
  // The card's full URL: the SDK resolves its default path from the host's root.
  return factory.createFromUrl(`${profile.base_url}/a2a/${agent}/.well-known/agent-card.json`, "");
}

let n = 0;
const message = (text, extra = {}) => ({
  message: {
    messageId: `node-${++n}`,
    role: Role.ROLE_USER,
    parts: [{ content: { $case: "text", value: text } }],
    ...extra,
  },
});

const textOf = (parts) => parts.map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("");
const state = (s) => TaskState[s];
function summary(events) {
  const kinds = events.map((e) => e.payload?.$case);
  const text = events
    .filter((e) => e.payload?.$case === "artifactUpdate")
    .map((e) => textOf(e.payload.value.artifact.parts))
    .join("");
  const last = events.at(-1)?.payload;
  return { kinds, text, final: last?.$case === "statusUpdate" ? state(last.value.status.state) : null };
}

const out = {};
const echo = await client(profile.agent);
out.card = { name: echo.agentCard?.name ?? null };

const streamed = [];
for await (const event of echo.sendMessageStream(message("hello from node"))) streamed.push(event);
out.stream = summary(streamed);
const first = streamed[0].payload.value;
out.stream.task_id = first.id;
out.stream.context_id = first.contextId;

const sent = await echo.sendMessage(message("second turn", { contextId: first.contextId }));
out.send = { kind: sent.id ? "task" : "message", state: state(sent.status?.state), text: textOf(sent.artifacts?.[0]?.parts ?? []), context_id: sent.contextId, cost: sent.metadata?.cost ?? null };

const got = await echo.getTask({ id: first.id });
out.get = { state: state(got.status.state), text: textOf(got.artifacts[0].parts) };

const listed = await echo.listTasks({ contextId: first.contextId });
out.list = { ids: listed.tasks.map((t) => t.id), total: listed.totalSize };

const slow = await client(profile.slow_agent);
// 30 words, 50 ms apart: still running when the dropped stream is resubscribed.
const WORDS = Array.from({ length: 30 }, (_, i) => `v${i}`).join(" ");
const dropped = [];
for await (const event of slow.sendMessageStream(message(WORDS))) {
  dropped.push(event);
  if (dropped.length === 3) break; // the client drops the stream
}
const slowId = dropped[0].payload.value.id;
const again = [];
for await (const event of slow.resubscribeTask({ id: slowId })) again.push(event);
out.resubscribe = { ...summary(again), first: again[0].payload.$case, first_state: state(again[0].payload.value.status.state) };

const long = [];
let canceled = null;
for await (const event of slow.sendMessageStream(message(Array.from({ length: 60 }, (_, i) => `w${i}`).join(" ")))) {
  long.push(event);
  if (long.length === 3) canceled = await slow.cancelTask({ id: long[0].payload.value.id });
}
out.cancel = { returned: state(canceled.status.state), final: summary(long).final };

try {
  await echo.getTask({ id: "task-missing" });
  out.missing = { ok: true };
} catch (error) {
  out.missing = { ok: false, name: error?.constructor?.name ?? String(error) };
}

process.stdout.write(JSON.stringify(out));
