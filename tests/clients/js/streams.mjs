// Streams through the JavaScript SDK: the events, tasks and checkpoints modes, with and
// without subgraphs; a client that goes away (onDisconnect cancel / continue, with an
// AbortSignal); the thread-level stream (threads.joinStream).
import { client, collect, failure, main, waitForStatus } from "./harness.mjs";

const FINISHED = ["success", "error", "interrupted", "timeout"];

async function newThread() {
  return (await client.threads.create()).thread_id;
}

/** The parts of a stream until `until(part)` holds; then the client leaves. */
async function until(stream, controller, done) {
  const parts = [];
  for await (const part of stream) {
    parts.push({ event: part.event, data: part.data, id: part.id ?? null });
    if (done(part)) break;
  }
  controller.abort();
  return parts;
}

const runDone = (part) => part.event === "metadata" && part.data?.status === "run_done";

await main({
  async mode({ mode, subgraphs }) {
    const threadId = await newThread();
    let created = null;
    const parts = await collect(
      client.runs.stream(threadId, "nested", {
        input: { text: "hi" },
        streamMode: mode,
        streamSubgraphs: subgraphs,
        onRunCreated: (meta) => {
          created = meta;
        },
      }),
    );
    const run = await client.runs.get(threadId, created.run_id);
    const replay = await collect(client.runs.joinStream(threadId, created.run_id, { lastEventId: "0" }));
    return { parts, run, replay };
  },

  async disconnect({ onDisconnect }) {
    const threadId = await newThread();
    const controller = new AbortController();
    let runId = null;
    const seen = [];
    const stream = client.runs.stream(threadId, "pipeline", {
      input: { steps: 6, delay_s: 0.3 },
      streamMode: "custom",
      onDisconnect,
      streamResumable: onDisconnect === "continue",
      signal: controller.signal,
      onRunCreated: (meta) => {
        runId = meta.run_id;
      },
    });
    const left = await failure(
      (async () => {
        for await (const part of stream) {
          seen.push({ event: part.event, data: part.data, id: part.id ?? null });
          if (part.event === "custom") controller.abort(); // the client goes away
        }
      })(),
    );
    let rejoined = null;
    if (onDisconnect === "continue") {
      // Re-joined from the last event this client saw: the rest of the run.
      const lastEventId = seen[seen.length - 1].id;
      rejoined = await collect(client.runs.joinStream(threadId, runId, { lastEventId }));
    }
    const run = await waitForStatus(threadId, runId, FINISHED);
    const state = await client.threads.getState(threadId);
    return { left, seen, rejoined, run, values: state.values };
  },

  async thread_stream({ streamMode }) {
    const threadId = await newThread();
    // A finished run, replayed from the start of the thread's log.
    const finished = await client.runs.create(threadId, "pipeline", {
      input: { steps: 2 },
      streamMode: "updates",
    });
    await client.runs.join(threadId, finished.run_id);
    const replayControl = new AbortController();
    const replay = await until(
      client.threads.joinStream(threadId, { streamMode, lastEventId: "0", signal: replayControl.signal }),
      replayControl,
      runDone,
    );
    // A running run (its two steps are the thread's third and fourth), followed from
    // the last event the client saw.
    const running = await client.runs.create(threadId, "pipeline", {
      input: { steps: 4, delay_s: 0.5 },
      streamMode: "custom",
    });
    const lastEventId = replay[replay.length - 1].id;
    const liveControl = new AbortController();
    const live = await until(
      client.threads.joinStream(threadId, { streamMode, lastEventId, signal: liveControl.signal }),
      liveControl,
      runDone,
    );
    const after = await client.runs.get(threadId, running.run_id);
    return { finished, replay, running, live, after };
  },
});
