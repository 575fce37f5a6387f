// Threads through the JavaScript SDK: create, get, search, update, copy, state, history.
import { client, failure, main, params } from "./harness.mjs";

await main({
  async lifecycle() {
    const thread = await client.threads.create({ metadata: { customer: "js-acme" } });
    const again = await client.threads.create({ threadId: thread.thread_id, ifExists: "do_nothing" });
    const conflict = await failure(
      client.threads.create({ threadId: thread.thread_id, ifExists: "raise" }),
    );
    await client.threads.update(thread.thread_id, { metadata: { stage: "triage" } });
    const fetched = await client.threads.get(thread.thread_id);
    const found = await client.threads.search({ metadata: { customer: "js-acme", stage: "triage" } });

    const values = await client.runs.wait(thread.thread_id, "pipeline", { input: { steps: 2 } });
    const state = await client.threads.getState(thread.thread_id);
    const history = await client.threads.getHistory(thread.thread_id, { limit: 10 });
    const updated = await client.threads.updateState(thread.thread_id, {
      values: { completed_steps: [99] },
      asNode: "step",
    });
    const afterUpdate = await client.threads.getState(thread.thread_id);
    const earlier = await client.threads.getState(thread.thread_id, state.checkpoint.checkpoint_id);
    const copy = await client.threads.copy(thread.thread_id);
    const copyState = await client.threads.getState(copy.thread_id);
    await client.threads.delete(thread.thread_id);
    const gone = await failure(client.threads.get(thread.thread_id));
    return {
      thread, again, conflict, fetched, found, values, state, history, updated, afterUpdate,
      earlier, copy, copyState, gone,
    };
  },

  async search_by_graph_id() {
    const thread = await client.threads.create({ metadata: { marker: params.marker } });
    await client.runs.wait(thread.thread_id, "chat", {
      input: { messages: [{ role: "user", content: "Where is my order?" }] },
    });
    const fetched = await client.threads.get(thread.thread_id);
    const byGraph = await client.threads.search({
      metadata: { graph_id: "chat", marker: params.marker },
    });
    const byAssistant = await client.threads.search({
      metadata: { assistant_id: fetched.metadata.assistant_id, marker: params.marker },
    });
    return { thread, fetched, byGraph, byAssistant };
  },
});

