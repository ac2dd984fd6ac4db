// Drive an MCP server over stdio with the official TypeScript SDK client, as desktop clients do.
// Input (stdin, JSON): {"command": str, "args": [str], "env": {..}, "calls": [{"name": str, "arguments": {..}}],
//                      "subscribe": [uri], "listenSeconds": n}   (the last two optional)
// Output (stdout, JSON): {"tools": [names], "results": [{"name", "isError", "text", "structuredContent",
//                          "progress": [message]} | {"name", "thrown"}], "updated": [uri], "read": {uri: text}}
// Subscriptions are taken before the calls; updates are collected while the calls run and for
// listenSeconds after, then each subscribed resource is read once.
// The client validates each result against the tool's outputSchema (listed first), exactly as
// Claude Desktop, Cursor, VS Code and MCP Inspector do; a result it rejects comes back as "thrown".
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ResourceUpdatedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const spec = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const transport = new StdioClientTransport({ command: spec.command, args: spec.args, env: spec.env, stderr: "inherit" });
const client = new Client({ name: "heablcoin-ts-check", version: "1.0.0" });
await client.connect(transport);
const { tools } = await client.listTools();
const updated = [];
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (note) => { updated.push(note.params.uri); });
for (const uri of spec.subscribe ?? []) await client.subscribeResource({ uri });
const results = [];
for (const call of spec.calls) {
  const progress = [];
  try {
    const result = await client.callTool({ name: call.name, arguments: call.arguments }, undefined,
      { onprogress: (p) => progress.push(p.message ?? ""), timeout: 120000 });
    results.push({
      name: call.name,
      isError: result.isError === true,
      text: result.content.filter((c) => c.type === "text").map((c) => c.text).join("\n"),
      structuredContent: result.structuredContent ?? null,
      progress,
    });
  } catch (error) {
    results.push({ name: call.name, thrown: `${error.code ?? ""} ${error.message}` });
  }
}
await new Promise((done) => setTimeout(done, (spec.listenSeconds ?? 0) * 1000));
const read = {};
for (const uri of spec.subscribe ?? []) read[uri] = (await client.readResource({ uri })).contents[0].text;
await client.close();
process.stdout.write(JSON.stringify({ tools: tools.map((t) => t.name), results, updated, read }));
