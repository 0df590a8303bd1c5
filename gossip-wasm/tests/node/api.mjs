// The listener and request API against a native cluster (GOSSIP_SEEDS, GOSSIP_KEY, GOSSIP_TOKEN):
// unsubscribe functions, once, off on groups, replaying current members, aborting a request.
// Exits non-zero on any failure.
import assert from "node:assert/strict";
import { GossipNode } from "gossip-wasm";

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

let unhandled = 0;
process.on("unhandledRejection", (e) => {
  unhandled += 1;
  console.error("unhandled rejection:", e);
});

const node = await GossipNode.create({ ...base, name: "api-js" });

// Members known when create() resolved are replayed, then every later join follows: each
// member exactly once, with no gap between the snapshot and the events.
const joins = new Map();
const stopJoins = node.on("memberJoined", (m) => joins.set(m.id, (joins.get(m.id) ?? 0) + 1), { replay: true });
assert.equal(typeof stopJoins, "function", "on() returns an unsubscribe function");
const others = () => node.members().filter((m) => !m.self && m.state === "alive");
for (const m of others()) assert.equal(joins.get(m.id), 1, `${m.name} replayed once, before on() returned`);
await until(() => others().length === 3, "3 native members alive");
for (const m of others()) assert.equal(joins.get(m.id), 1, `${m.name} announced exactly once`);
assert.throws(() => node.on("message", () => {}, { replay: true }), (e) => e.code === "INVALID_ARGUMENT");
assert.throws(() => node.on("memberJoined", "nope"), (e) => e.code === "INVALID_ARGUMENT");
assert.throws(() => node.on("memberjoined", () => {}), (e) => e.code === "INVALID_ARGUMENT");

const natives = others();
const ctl = async (to, cmd) => {
  const reply = (await node.request(to, cmd, { topic: "ctl", timeoutMs: 30_000 })).value();
  assert.ok(reply.ok, `ctl ${cmd.op}: ${reply.detail}`);
  return reply;
};

// A group's listeners: `on` returns an unsubscribe function, `off` removes a listener.
const group = node.group({ kind: "late" });
const added = [];
let removedListenerCalls = 0;
const stopAdded = group.on("added", (m) => added.push(m.id));
assert.equal(typeof stopAdded, "function", "group.on() returns an unsubscribe function");
const dropped = () => (removedListenerCalls += 1);
group.on("added", dropped);
group.off("added", dropped);
let onceAdded = 0;
group.once("added", () => (onceAdded += 1));

const late = await GossipNode.create({ ...base, name: "api-late", metadata: { kind: "late" } });
await until(() => joins.get(late.id) === 1, "the late node's join reaches the replaying listener");
await until(() => added.includes(late.id), "the group reports the late node");
assert.equal(removedListenerCalls, 0, "a listener removed with group.off is not called");
stopAdded();
stopAdded();
const later = await GossipNode.create({ ...base, name: "api-later", metadata: { kind: "late" } });
await until(() => group.members().some((m) => m.id === later.id), "the group sees the later node");
assert.deepEqual(added, [late.id], "an unsubscribed group listener is not called");
assert.equal(onceAdded, 1, "group.once fires once");
stopJoins();
await until(() => others().length === 5, "5 members alive");
const gone = late.id;
await later.leave();
await late.leave();

// Node listeners: once fires once; an unsubscribe function removes its listener only (and is
// idempotent); off removes every registration of a function, once ones included.
const news = [];
node.on("message", (m) => m.topic === "news" && news.push(m.value()));
let onceCalls = 0;
const onceValue = [];
node.once("message", (m) => {
  onceCalls += 1;
  onceValue.push(m.value());
});
let unsubscribed = 0;
const stop = node.on("message", () => (unsubscribed += 1));
let twice = 0;
const counted = () => (twice += 1);
node.on("message", counted);
const stopSecond = node.on("message", counted);
stop();
stop();
stopSecond();
let removed = 0;
const f = () => (removed += 1);
node.on("message", f);
node.once("message", f);
node.off("message", f);
await ctl(natives[0].id, { op: "broadcast", topic: "news", text: "one" });
await until(() => news.length === 1, "the first broadcast");
await ctl(natives[0].id, { op: "broadcast", topic: "news", text: "two" });
await until(() => news.length === 2, "the second broadcast");
assert.deepEqual(news, ["one", "two"]);
assert.equal(onceCalls, 1, "once fires once");
assert.deepEqual(onceValue, ["one"]);
assert.equal(unsubscribed, 0, "an unsubscribed listener is not called");
assert.equal(twice, 2, "unsubscribing one registration keeps the other one");
assert.equal(removed, 0, "off removes on and once registrations of the function");

// Aborting a request rejects it at once with ABORTED; the node's later TIMEOUT of the same
// request is not an unhandled rejection.
const target = natives[0].id;
const controller = new AbortController();
const started = Date.now();
const pending = node.request(target, "anyone?", { topic: "nobody-answers", timeoutMs: 1_500, signal: controller.signal });
setTimeout(() => controller.abort(new Error("user went away")), 50);
await assert.rejects(pending, (e) => {
  assert.equal(e.name, "GossipError");
  assert.equal(e.code, "ABORTED");
  assert.match(e.message, /user went away/);
  return true;
});
assert.ok(Date.now() - started < 1_000, `rejected after ${Date.now() - started} ms, not at the timeout`);
await assert.rejects(
  node.request(target, "x", { topic: "nobody-answers", signal: AbortSignal.abort() }),
  (e) => e.code === "ABORTED",
);
await assert.rejects(node.request(target, "x", { signal: "stop" }), (e) => e.code === "INVALID_ARGUMENT");
// A request that completes is unaffected by a later abort.
const done = new AbortController();
const reply = await node.request(target, { op: "state", state: "alive" }, { topic: "ctl", timeoutMs: 30_000, signal: done.signal });
assert.equal(reply.value().ok, true);
done.abort();
// A request sent after the aborted one, with the same timeout, times out after it: by then the
// node has settled the aborted request with TIMEOUT, which must have been absorbed.
await assert.rejects(
  node.request(target, "x", { topic: "nobody-answers", timeoutMs: 1_500 }),
  (e) => e.code === "TIMEOUT",
);
await new Promise((r) => setImmediate(r));
assert.equal(unhandled, 0, "no unhandled rejection");

// Quorum requests: one request to several members, one outcome. Every native answers `ping`
// with its id.
const ids = natives.map((m) => m.id);
const all = await node.quorumRequest(ids, { op: "ping" }, { topic: "ctl", quorum: "all", timeoutMs: 30_000 });
assert.equal(all.reached, true, `all answered: ${JSON.stringify(all.failed)}`);
assert.equal(all.answered.length, 3);
assert.deepEqual(all.answered.map((a) => a.from).sort(), [...ids].sort(), "one answer from each");
for (const a of all.answered) {
  assert.equal(a.kind, "response");
  assert.equal(a.value().detail, a.from, "each answer is its member's own");
}
assert.deepEqual(all.failed, []);
assert.deepEqual(all.unanswered, []);
// The first answer is enough: the others are still outstanding when it is decided.
const first = await node.quorumRequest(ids, { op: "ping" }, { topic: "ctl", quorum: "first", timeoutMs: 30_000 });
assert.equal(first.reached, true);
assert.equal(first.answered.length, 1);
assert.equal(first.answered.length + first.unanswered.length, 3);
// A member that left cannot answer: counted as failed at once; "all" is then out of reach,
// while a majority of the four (3) still answers.
await until(() => {
  const m = node.member(gone);
  return m === undefined || m.state === "left" || m.state === "dead";
}, "the tab sees the late node gone");
const withGone = [...ids, gone];
const impossible = await node.quorumRequest(withGone, { op: "ping" }, { topic: "ctl", quorum: "all", timeoutMs: 30_000 });
assert.equal(impossible.reached, false);
assert.deepEqual(impossible.failed, [{ member: gone, reason: "unreachable" }]);
assert.deepEqual([...impossible.unanswered].sort(), [...ids].sort(), "decided before anyone was asked");
const majority = await node.quorumRequest(withGone, { op: "ping" }, { topic: "ctl", timeoutMs: 30_000 });
assert.equal(majority.reached, true, "3 of 4 is a majority");
assert.equal(majority.answered.length, 3);
// Silence until the timeout: a topic nobody answers.
const silent = await node.quorumRequest(ids, "anyone?", { topic: "nobody-answers", quorum: 2, timeoutMs: 500 });
assert.equal(silent.reached, false);
// Decided at the second failure: 2 answers out of 3 can no longer arrive.
assert.equal(silent.failed.length, 2);
assert.equal(silent.unanswered.length, 1);
assert.ok(silent.failed.every((f) => f.reason === "timeout"), JSON.stringify(silent.failed));
// Bad arguments reject with INVALID_ARGUMENT and send nothing.
await assert.rejects(node.quorumRequest([], "x"), (e) => e.code === "INVALID_ARGUMENT");
await assert.rejects(node.quorumRequest(ids, "x", { quorum: "most" }), (e) => e.code === "INVALID_ARGUMENT");
await assert.rejects(node.quorumRequest(ids, "x", { quorum: 0 }), (e) => e.code === "INVALID_ARGUMENT");
await assert.rejects(node.quorumRequest(["nope"], "x"), (e) => e.code === "INVALID_ARGUMENT");

await node.leave();
await assert.rejects(node.quorumRequest(ids, "x"), (e) => e.code === "LEFT");
console.log("api.mjs: unsubscribe, once, group off, member replay, abort and quorum requests passed");
