// A Node.js without a global WebSocket but with the `ws` package installed: the node joins the
// cluster through `ws`, asks a native member and gets its answer. Exits non-zero on failure.
import assert from "node:assert/strict";

delete globalThis.WebSocket;
const { GossipNode } = await import("gossip-wasm");

const seeds = process.env.GOSSIP_SEEDS?.split(",").filter(Boolean);
assert.ok(seeds?.length, "GOSSIP_SEEDS names the cluster");
// An unreachable seed first: a refused connection must not crash the process (ws emits `error`).
const node = await GossipNode.create({
  name: "node-ws",
  seeds: ["ws://127.0.0.1:9/gossip/ws", ...seeds],
  clusterKey: process.env.GOSSIP_KEY,
  token: process.env.GOSSIP_TOKEN,
  config: "local",
});
assert.equal(typeof globalThis.WebSocket, "function", "ws was installed as the global WebSocket");
const deadline = Date.now() + 20_000;
const natives = () => node.members().filter((m) => !m.self && m.state === "alive");
while (natives().length < 3) {
  assert.ok(Date.now() < deadline, `saw ${natives().length} live members, expected 3`);
  await new Promise((r) => setTimeout(r, 50));
}
// A 20 kB field makes frames large enough that a view of the .wasm's memory reused before the
// bytes left would show as a corrupted or refused frame.
const big = "x".repeat(20_000);
for (const m of natives()) {
  const reply = await node.request(m.id, { op: "state", member: node.id, state: "alive", pad: big }, { topic: "ctl", timeoutMs: 10_000 });
  assert.equal(reply.value().ok, true, JSON.stringify(reply.value()));
}
await node.leave();
console.log("ws.mjs: joined through ws and got answers from every native member");
