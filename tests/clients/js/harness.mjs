// What every client script shares: a Client on the server the test started, and one
// JSON document printed on stdout (the Python test asserts on it).
import { Client } from "@langchain/langgraph-sdk";

export const client = new Client({
  apiUrl: process.env.STATEHOUSE_API_URL,
  apiKey: process.env.STATEHOUSE_API_KEY,
  // The test wants each answer as the server gave it, not a retried one.
  callerOptions: { maxRetries: 0 },
});

export const params = JSON.parse(process.argv[3] ?? "{}");

/** The outcome of a call the test expects to fail: its HTTP status and JSON body. */
export async function failure(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    let body = null;
    try {
      body = JSON.parse(error.text);
    } catch {
      // not a JSON body (or no HTTP answer at all)
    }
    return { ok: false, status: error.status ?? null, message: String(error.message ?? error), body };
  }
}

/** Every part of a stream, in order, as {event, data, id}. */
export async function collect(stream) {
  const parts = [];
  for await (const part of stream) {
    parts.push({ event: part.event, data: part.data, id: part.id ?? null });
  }
  return parts;
}

/** Wait until the run has the status wanted (or the deadline passes). */
export async function waitForStatus(threadId, runId, statuses, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await client.runs.get(threadId, runId);
    if (statuses.includes(run.status) || Date.now() > deadline) return run;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Run the scenario named on the command line and print its result as JSON. */
export async function main(scenarios) {
  const name = process.argv[2];
  const scenario = scenarios[name];
  if (!scenario) throw new Error(`no scenario ${name}: ${Object.keys(scenarios).join(", ")}`);
  const result = await scenario(params);
  process.stdout.write(JSON.stringify(result) + "\n");
}
