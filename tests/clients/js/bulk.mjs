// Many at once through the JavaScript SDK: runs.createBatch, runs.cancelMany (by ids,
// by status, with rollback), runs.delete, threads.count and threads.prune.
import { client, failure, main, params } from "./harness.mjs";

await main({
  async batch() {
    const runs = await client.runs.createBatch([
      { assistantId: "pipeline", input: { steps: 1 }, onCompletion: "keep" },
      { assistantId: "pipeline", input: { steps: 2 }, onCompletion: "keep" },
    ]);
    const joined = [];
    for (const run of runs) joined.push(await client.runs.join(run.thread_id, run.run_id));
    return { runs, joined };
  },

  async cancel_many() {
    const threadId = (await client.threads.create()).thread_id;
    const later = (n) =>
      client.runs.create(threadId, "pipeline", { input: { steps: n }, afterSeconds: 600 });
    const [a, b, c] = [await later(1), await later(2), await later(3)];
    const byIds = await client.runs.cancelMany({ threadId, runIds: [a.run_id] });
    const afterIds = await Promise.all([a, b, c].map((r) => client.runs.get(threadId, r.run_id)));
    const rolledBack = await client.runs.cancelMany({ threadId, runIds: [b.run_id], action: "rollback" });
    const bGone = await failure(client.runs.get(threadId, b.run_id));
    const byStatus = await client.runs.cancelMany({ status: "pending" });
    const cAfter = await client.runs.get(threadId, c.run_id);
    const noneLeft = await failure(client.runs.cancelMany({ threadId, runIds: [c.run_id] }));
    return { byIds, afterIds, rolledBack, bGone, byStatus, cAfter, noneLeft };
  },

  async delete_run() {
    const threadId = (await client.threads.create()).thread_id;
    const kept = await client.runs.create(threadId, "pipeline", { input: { steps: 1 } });
    await client.runs.join(threadId, kept.run_id);
    const run = await client.runs.create(threadId, "pipeline", { input: { steps: 1 } });
    await client.runs.join(threadId, run.run_id);
    const deleted = await client.runs.delete(threadId, run.run_id);
    const gone = await failure(client.runs.get(threadId, run.run_id));
    const again = await failure(client.runs.delete(threadId, run.run_id));
    const listed = await client.runs.list(threadId);
    return { kept, run, deleted, gone, again, listed };
  },

  async count_and_prune() {
    const marker = { marker: params.marker };
    const threads = [];
    for (let i = 0; i < 3; i += 1) threads.push(await client.threads.create({ metadata: marker }));
    const counted = await client.threads.count({ metadata: marker });
    const pruned = await client.threads.prune([threads[0].thread_id, threads[1].thread_id]);
    const after = await client.threads.count({ metadata: marker });
    const gone = await failure(client.threads.get(threads[0].thread_id));
    const left = await client.threads.search({ metadata: marker });
    return { threads, counted, pruned, after, gone, left };
  },
});
