// Runs through the JavaScript SDK: wait, background + join, stream in each mode,
// joinStream, cancel, list, stateless runs, interrupts resumed with a command.
import { client, collect, failure, main, params, waitForStatus } from "./harness.mjs";

const ORDER = { messages: [{ role: "user", content: "Where is my order 1042?" }] };

async function newThread() {
  return (await client.threads.create()).thread_id;
}

await main({
  async wait_and_background() {
    const threadId = await newThread();
    const values = await client.runs.wait(threadId, "pipeline", { input: { steps: 3 } });
    const run = await client.runs.create(threadId, "pipeline", { input: { steps: 2 } });
    const joined = await client.runs.join(threadId, run.run_id);
    const fetched = await client.runs.get(threadId, run.run_id);
    const listed = await client.runs.list(threadId);
    const thread = await client.threads.get(threadId);
    return { values, run, joined, fetched, listed, thread };
  },

  async stream_mode({ assistant, mode }) {
    const threadId = await newThread();
    const input = assistant === "chat" ? ORDER : { steps: 2 };
    let created = null;
    const parts = await collect(
      client.runs.stream(threadId, assistant, {
        input,
        streamMode: mode,
        onRunCreated: (meta) => {
          created = meta;
        },
      }),
    );
    const runs = await client.runs.list(threadId);
    return { threadId, created, parts, runs };
  },

  async stream_several_modes() {
    const threadId = await newThread();
    const parts = await collect(
      client.runs.stream(threadId, "chat", { input: ORDER, streamMode: ["values", "updates", "messages-tuple"] }),
    );
    return { parts };
  },

  async join_stream() {
    const threadId = await newThread();
    const run = await client.runs.create(threadId, "pipeline", {
      input: { steps: 3, delay_s: 0.2 },
      streamMode: ["values", "custom"],
      streamResumable: true,
    });
    const live = await collect(client.runs.joinStream(threadId, run.run_id));
    const replay = await collect(client.runs.joinStream(threadId, run.run_id, { lastEventId: "-1" }));
    const finished = await client.runs.get(threadId, run.run_id);
    return { run, live, replay, finished };
  },

  async cancel() {
    const threadId = await newThread();
    const run = await client.runs.create(threadId, "pipeline", { input: { steps: 50, delay_s: 0.2 } });
    const running = await waitForStatus(threadId, run.run_id, ["running"]);
    await client.runs.cancel(threadId, run.run_id, true);
    const cancelled = await client.runs.get(threadId, run.run_id);
    const thread = await client.threads.get(threadId);
    const listed = await client.runs.list(threadId);
    return { running, cancelled, thread, listed };
  },

  async cancel_finished() {
    const threadId = await newThread();
    const run = await client.runs.create(threadId, "pipeline", { input: { steps: 1 } });
    await client.runs.join(threadId, run.run_id);
    const again = await failure(client.runs.cancel(threadId, run.run_id));
    return { again };
  },

  async stateless() {
    const values = await client.runs.wait(null, "pipeline", { input: { steps: 2 } });
    const parts = await collect(
      client.runs.stream(null, "chat", { input: ORDER, streamMode: "messages-tuple" }),
    );
    return { values, parts };
  },

  async interrupt_resume({ emptyInput }) {
    const threadId = await newThread();
    const first = await client.runs.wait(threadId, "approval", { input: { request: "a refund" } });
    const interrupted = await client.threads.get(threadId);
    const state = await client.threads.getState(threadId);
    const resume = { command: { resume: { action: "approve", note: "fine" } }, streamMode: "values" };
    // useStream sends an empty input next to the command.
    if (emptyInput) resume.input = {};
    const parts = await collect(client.runs.stream(threadId, "approval", resume));
    const after = await client.threads.getState(threadId);
    const thread = await client.threads.get(threadId);
    return { first, interrupted, state, parts, after, thread };
  },

  async as_use_stream_submits({ resumable }) {
    // The fields React's useStream sends on every submit.
    const threadId = await newThread();
    const result = await failure(
      collect(
        client.runs.stream(threadId, "chat", {
          input: ORDER,
          streamMode: ["values", "messages-tuple"],
          onDisconnect: resumable ? "continue" : "cancel",
          streamResumable: resumable,
        }),
      ),
    );
    return { result };
  },

  async ends_without_end_event() {
    const threadId = await newThread();
    const parts = await collect(
      client.runs.stream(threadId, "pipeline", { input: { steps: 2 }, streamMode: "values" }),
    );
    return { parts };
  },

  async events_mode() {
    const threadId = await newThread();
    const result = await failure(
      collect(client.runs.stream(threadId, "chat", { input: ORDER, streamMode: "events" })),
    );
    return { result };
  },

});
