// The full flavour (`gossip-wasm-full`, `cargo xtask wasm --full`) against a native cluster
// (GOSSIP_SEEDS, GOSSIP_KEY, GOSSIP_TOKEN): the replicated state both ways (a tab's write seen
// by the natives, a native's write seen by the tab), watches by prefix, deletes, limits, and key
// ownership agreeing with a native's. Exits non-zero on any failure.
import assert from "node:assert/strict";
import { GossipNode } from "gossip-wasm-full";

const seeds = process.env.GOSSIP_SEEDS?.split(",").filter(Boolean);
assert.ok(seeds?.length, "GOSSIP_SEEDS names the cluster");
const base = { seeds, clusterKey: process.env.GOSSIP_KEY, token: process.env.GOSSIP_TOKEN, config: "local" };

async function until(cond, what, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    assert.ok(Date.now() < deadline, `timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const node = await GossipNode.create({ ...base, name: "state-js" });
const others = () => node.members().filter((m) => !m.self && m.state === "alive");
await until(() => others().length === 3, "3 native members alive");
const natives = others().map((m) => m.id);
const ctl = async (to, cmd) => {
  const reply = (await node.request(to, cmd, { topic: "ctl", timeoutMs: 30_000 })).value();
  assert.ok(reply.ok, `ctl ${cmd.op}: ${reply.detail}`);
  return reply;
};

const changes = [];
const stop = node.watchState("kv/", (c) => changes.push(c));
assert.equal(typeof stop, "function");

// The tab's write: held here at once, then seen by every native.
const version = node.setState("kv/color", "blue");
assert.equal(typeof version, "number");
const mine = node.getState(node.id, "kv/color");
assert.equal(mine.text, "blue");
assert.deepEqual([...mine.value], [...new TextEncoder().encode("blue")]);
assert.equal(mine.version, version);
await ctl(natives[0], { op: "stateSeen", member: node.id, key: "kv/color", value: "blue" });
assert.ok(changes.some((c) => c.owner === node.id && c.key === "kv/color" && c.text === "blue"), "own write reported");

// A native's write: seen by the tab, reported to the watch.
await ctl(natives[1], { op: "stateSet", key: "kv/size", value: "large" });
await until(() => node.getState(natives[1], "kv/size")?.text === "large", "the native's write reaches the tab");
assert.ok(changes.some((c) => c.owner === natives[1] && c.key === "kv/size" && c.text === "large"), "native write reported");
assert.deepEqual(node.stateEntries(natives[1]).map((e) => [e.key, e.text]), [["kv/size", "large"]]);

// Keys outside the watched prefix are held but not reported.
await ctl(natives[1], { op: "stateSet", key: "other/x", value: "1" });
await until(() => node.getState(natives[1], "other/x")?.text === "1", "the unwatched key arrives");
assert.ok(!changes.some((c) => c.key === "other/x"), "an unwatched key is not reported");

// Deletes: a tombstone every native applies; deleting a missing key is a no-op.
assert.equal(typeof node.deleteState("kv/color"), "number");
assert.equal(node.deleteState("kv/color"), null);
assert.equal(node.getState(node.id, "kv/color"), undefined);
await ctl(natives[2], { op: "stateSeen", member: node.id, key: "kv/color", value: "" });
assert.ok(changes.some((c) => c.owner === node.id && c.key === "kv/color" && c.value === null && c.text === null), "delete reported");

// Limits and bad arguments are typed errors; nothing is written.
assert.throws(() => node.setState("k".repeat(300), "x"), (e) => e.code === "STATE_LIMIT");
assert.throws(() => node.setState("kv/n", 5), (e) => e.code === "INVALID_ARGUMENT");
assert.throws(() => node.getState("nope", "kv/n"), (e) => e.code === "INVALID_ARGUMENT");
assert.throws(() => node.watchState(7, () => {}), (e) => e.code === "INVALID_ARGUMENT");
assert.deepEqual(node.stateEntries(node.id), []);

// After unsubscribing, nothing more is reported.
stop();
stop();
const seen = changes.length;
await ctl(natives[1], { op: "stateSet", key: "kv/size", value: "small" });
await until(() => node.getState(natives[1], "kv/size")?.text === "small", "the second native write arrives");
assert.equal(changes.length, seen, "a stopped watch reports nothing");

// Ownership: with the same live members, the tab and a native name the same owners.
for (const key of ["a", "orders/17", "user:42"]) {
  let native = [];
  const deadline = Date.now() + 20_000;
  for (;;) {
    native = (await ctl(natives[0], { op: "owners", key })).detail.split(",");
    if (JSON.stringify(node.owners(key, 3)) === JSON.stringify(native) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(node.owners(key, 3), native, `owners of ${key}`);
  assert.equal(node.owner(key), native[0]);
  assert.equal(node.owner(new TextEncoder().encode(key)), native[0], "bytes and text keys agree");
}
assert.equal(node.owners("a", 10).length, 4, "all live members, ranked, when fewer than n");
assert.throws(() => node.owners("a", 0), (e) => e.code === "INVALID_ARGUMENT");

await node.leave();
console.log("state.mjs: replicated state both ways, watches, deletes, limits and ownership passed");
