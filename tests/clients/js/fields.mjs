// Run fields through the JavaScript SDK: multitask strategies, durability, context,
// feedbackKeys, onCompletion, ifNotExists, a webhook refused, validation errors; the
// assistant's schemas and graph with xray.
import { randomUUID } from "node:crypto";

import { client, failure, main, waitForStatus } from "./harness.mjs";

async function newThread() {
  return (await client.threads.create()).thread_id;
}

/** Poll `read` until it answers 404 (or the deadline passes): the last outcome. */
async function untilGone(read, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const outcome = await failure(read());
    if (outcome.status === 404 || Date.now() > deadline) return outcome;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

await main({
  async multitask({ strategy }) {
    const threadId = await newThread();
    const enqueue = strategy === "enqueue";
    const first = await client.runs.create(threadId, "pipeline", {
      input: enqueue ? { steps: 3, delay_s: 0.3 } : { steps: 300, delay_s: 0.05 },
    });
    const running = await waitForStatus(threadId, first.run_id, ["running"]);
    const second = await failure(
      client.runs.create(threadId, "pipeline", { input: { steps: 1 }, multitaskStrategy: strategy }),
    );
    if (second.ok) {
      await client.runs.join(threadId, second.value.run_id);
    } else {
      await client.runs.cancel(threadId, first.run_id, true);
    }
    const firstAfter = await failure(client.runs.get(threadId, first.run_id));
    const secondAfter = second.ok ? await client.runs.get(threadId, second.value.run_id) : null;
    const listed = await client.runs.list(threadId);
    const state = await client.threads.getState(threadId);
    return { first, running, second, firstAfter, secondAfter, listed, values: state.values };
  },

  async durability({ durability }) {
    const threadId = await newThread();
    const values = await client.runs.wait(threadId, "pipeline", { input: { steps: 2 }, durability });
    const history = await client.threads.getHistory(threadId, { limit: 50 });
    return { values, checkpoints: history.length };
  },

  async context() {
    const threadId = await newThread();
    const signed = await client.runs.wait(threadId, "signed", {
      input: { text: "hi" },
      context: { user: "ann" },
    });
    const other = await client.runs.wait(null, "signed", { input: { text: "ho" }, context: { user: "bea" } });
    return { signed, other };
  },

  async feedback_keys() {
    const threadId = await newThread();
    const run = await client.runs.create(threadId, "pipeline", {
      input: { steps: 1 },
      feedbackKeys: ["score", "helpful"],
    });
    await client.runs.join(threadId, run.run_id);
    const fetched = await client.runs.get(threadId, run.run_id);
    return { run, fetched };
  },

  async on_completion({ onCompletion }) {
    const run = await client.runs.create(null, "pipeline", {
      input: { steps: 1 },
      ...(onCompletion ? { onCompletion } : {}),
    });
    if (onCompletion === "keep") {
      await client.runs.join(run.thread_id, run.run_id);
      const thread = await failure(client.threads.get(run.thread_id));
      const state = await client.threads.getState(run.thread_id);
      const fetched = await client.runs.get(run.thread_id, run.run_id);
      return { run, thread, values: state.values, fetched };
    }
    const thread = await untilGone(() => client.threads.get(run.thread_id));
    return { run, thread };
  },

  async if_not_exists() {
    const threadId = randomUUID();
    const values = await client.runs.wait(threadId, "pipeline", {
      input: { steps: 1 },
      ifNotExists: "create",
    });
    const thread = await client.threads.get(threadId);
    const missing = randomUUID();
    const refused = await failure(client.runs.wait(missing, "pipeline", { input: { steps: 1 } }));
    const notCreated = await failure(client.threads.get(missing));
    return { threadId, values, thread, refused, notCreated };
  },

  async schemas_and_graph() {
    const schemas = await client.assistants.getSchemas("signed");
    const flat = await client.assistants.getGraph("signed");
    const xray = await client.assistants.getGraph("signed", { xray: true });
    const xray1 = await client.assistants.getGraph("signed", { xray: 1 });
    return { schemas, flat, xray, xray1 };
  },

  async refused() {
    const threadId = await newThread();
    const webhook = await failure(
      client.runs.create(threadId, "pipeline", { input: { steps: 1 }, webhook: "https://example.com/hook" }),
    );
    const strategy = await failure(
      client.runs.create(threadId, "pipeline", { input: { steps: 1 }, multitaskStrategy: "bogus" }),
    );
    const disconnect = await failure(
      client.runs.wait(threadId, "pipeline", { input: { steps: 1 }, onDisconnect: "later" }),
    );
    const runs = await client.runs.list(threadId);
    return { webhook, strategy, disconnect, runs };
  },
});
