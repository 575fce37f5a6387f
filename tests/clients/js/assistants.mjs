// Assistants through the JavaScript SDK: search, get, graph, schemas, create/update.
import { client, failure, main } from "./harness.mjs";

await main({
  async read() {
    const system = await client.assistants.get("chat");
    const search = await client.assistants.search({ graphId: "pipeline" });
    const graph = await client.assistants.getGraph("chat");
    const schemas = await client.assistants.getSchemas("pipeline");
    const created = await client.assistants.create({
      graphId: "pipeline",
      name: "js slow",
      metadata: { team: "js" },
      config: { recursion_limit: 40 },
    });
    const updated = await client.assistants.update(created.assistant_id, { name: "js slower" });
    const found = await client.assistants.search({ metadata: { team: "js" } });
    await client.assistants.delete(created.assistant_id);
    const gone = await failure(client.assistants.get(created.assistant_id));
    return { system, search, graph, schemas, created, updated, found, gone };
  },

  async subgraphs_and_versions() {
    const created = await client.assistants.create({ graphId: "pipeline", name: "v1" });
    const subgraphs = await failure(client.assistants.getSubgraphs(created.assistant_id));
    await client.assistants.update(created.assistant_id, { name: "v2" });
    const versions = await failure(client.assistants.getVersions(created.assistant_id));
    const latest = await failure(client.assistants.setLatest(created.assistant_id, 1));
    const after = await client.assistants.get(created.assistant_id);
    return { created, subgraphs, versions, latest, after };
  },
});
