// Imports the installed package the way an application does, then (when the harness gives a
// cluster) joins it and checks a broadcast arrives. Exits non-zero on any failure.
import assert from "node:assert/strict";
import { GossipNode, Message } from "gossip-wasm";

assert.equal(typeof GossipNode.create, "function");
assert.equal(typeof Message, "function");

// Bad options are refused with a clear, coded error, before any network use.
await assert.rejects(GossipNode.create({ seeds: [] }), (e) => {
  assert.equal(e.code, "INVALID_OPTION");
  assert.match(e.message, /seeds/);
  return true;
});
await assert.rejects(GossipNode.create({ seeds: ["http://x"] }), (e) => e.code === "INVALID_OPTION");
await assert.rejects(GossipNode.create({ seeds: ["ws://127.0.0.1:9/"], clusterKey: "zz" }), (e) => e.code === "INVALID_OPTION");
console.log("package.mjs: import and option checks passed");

const seeds = process.env.GOSSIP_SEEDS?.split(",").filter(Boolean);
if (seeds?.length) {
  const node = await GossipNode.create({
    name: "node-js",
    seeds,
    clusterKey: process.env.GOSSIP_KEY,
    token: process.env.GOSSIP_TOKEN,
    config: "local",
    metadata: { runtime: "node" },
  });
  const natives = () => node.members().filter((m) => !m.self && m.state === "alive").length;
  const deadline = Date.now() + 20_000;
  while (natives() < 3) {
    assert.ok(Date.now() < deadline, `saw ${natives()} live members, expected 3`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // Ask a native node (over gossip itself) to broadcast; the broadcast must reach us.
  const got = new Promise((resolve) => node.on("message", (m) => m.topic === "from-native" && resolve(m)));
  const native = node.members().find((m) => !m.self);
  const reply = await node.request(native.id, { op: "broadcast", topic: "from-native", text: "hello node" }, { topic: "ctl", timeoutMs: 10_000 });
  assert.equal(reply.value().ok, true);
  const m = await Promise.race([got, new Promise((_, rej) => setTimeout(() => rej(new Error("no broadcast within 10 s")), 10_000))]);
  assert.equal(m.kind, "broadcast");
  assert.equal(m.value(), "hello node");
  await node.leave();
  console.log("package.mjs: joined the native cluster and received its broadcast");
}
