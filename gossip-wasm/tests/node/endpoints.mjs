// Named endpoints from JavaScript (the full flavour, `gossip-wasm-full`) against a native cluster
// started with the admission hook (GOSSIP_SEEDS, GOSSIP_KEY, GOSSIP_TOKEN; the harness's `admit`
// mode): a native's name resolved, requested (any, nearest, all) and streamed to by the tab; the
// tab's name resolved, requested and streamed to by a native; watches seeing holders come and go;
// bad input refused with typed errors; and tabs without the cluster key, whose names reach the
// cluster only if their grant lets them write state. Safe to run again on the same cluster.
// Exits non-zero on any failure.
import assert from "node:assert/strict";
import { GossipNode } from "gossip-wasm-full";

const seeds = process.env.GOSSIP_SEEDS?.split(",").filter(Boolean);
assert.ok(seeds?.length, "GOSSIP_SEEDS names the cluster");
const base = { seeds, clusterKey: process.env.GOSSIP_KEY, token: process.env.GOSSIP_TOKEN, config: "local" };
const enc = (text) => new TextEncoder().encode(text);
const dec = (bytes) => new TextDecoder().decode(bytes);
const code = (c) => (e) => e?.name === "GossipError" && e.code === c;
// Names of this run: a second run on the same cluster does not meet the first one's.
const run = Math.random().toString(36).slice(2, 8);

async function until(cond, what, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    assert.ok(Date.now() < deadline, `timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const node = await GossipNode.create({ ...base, name: "ep-js" });
const natives = () =>
  node
    .members()
    .filter((m) => !m.self && m.state === "alive" && m.metadata.kind === "native")
    .sort((x, y) => (x.id < y.id ? -1 : 1));
await until(() => natives().length === 3, "3 native members alive");
const [a, b, c] = natives();
const ctl = async (to, cmd) => {
  const reply = (await node.request(to, cmd, { topic: "ctl", timeoutMs: 30_000 })).value();
  assert.ok(reply.ok, `ctl ${cmd.op} ${cmd.key ?? ""}: ${reply.detail}`);
  return reply.detail;
};
const ids = (name, on = node) => on.resolve(name).map((h) => h.id);
// As text: `resolve` orders by id bytes, which is not the order of their base32 text.
const sorted = (list) => [...list].sort().join();

// ----- bad input: typed errors, nothing registered or sent --------------------------------------
for (const bad of ["", "a b", "é", "x".repeat(65), "x".repeat(100_000), "a\0"]) {
  assert.throws(() => node.registerEndpoint(bad), code("INVALID_ARGUMENT"), `register ${JSON.stringify(bad.slice(0, 9))}`);
  assert.throws(() => node.resolve(bad), code("INVALID_ARGUMENT"));
  await assert.rejects(node.requestEndpoint(bad, "x"), code("INVALID_ARGUMENT"));
  await assert.rejects(node.openStreamToEndpoint(bad), code("INVALID_ARGUMENT"));
  assert.throws(() => node.watchEndpoint(bad, () => {}), code("INVALID_ARGUMENT"));
}
for (const notString of [7, null, undefined, {}, enc("orders")]) {
  assert.throws(() => node.registerEndpoint(notString), code("INVALID_ARGUMENT"));
  assert.throws(() => node.unregisterEndpoint(notString), code("INVALID_ARGUMENT"));
}
assert.throws(() => node.registerEndpoint("x".repeat(5000)), (e) => e.code === "INVALID_ARGUMENT" && /1024/.test(e.message));
assert.throws(() => node.registerEndpoint("x".repeat(65)), (e) => e.code === "INVALID_ARGUMENT" && /64 byte/.test(e.message));
assert.throws(() => node.watchEndpoint("orders"), code("INVALID_ARGUMENT"));
const nobody = `nobody-${run}`;
await assert.rejects(node.requestEndpoint(nobody, "x"), code("NO_HOLDER"));
await assert.rejects(node.openStreamToEndpoint(nobody), code("NO_HOLDER"));
await assert.rejects(node.openStreamToEndpoint(nobody, { policy: "all" }), code("NOT_ONE"));
await assert.rejects(node.requestEndpoint(nobody, "x", { policy: "first" }), code("INVALID_ARGUMENT"));
await assert.rejects(node.requestEndpoint(nobody, "x", { timeoutMs: -1 }), code("INVALID_ARGUMENT"));
await assert.rejects(node.requestEndpoint(nobody, undefined), code("INVALID_ARGUMENT"));
assert.deepEqual(node.endpoints().filter((e) => e.name.endsWith(run)), []);

// ----- a native's name: resolved, watched, requested, streamed to -------------------------------
// A previous run on this cluster may have left "orders" held.
for (const n of [a, b, c]) await ctl(n.id, { op: "epUnregister", key: "orders" });
await until(() => ids("orders").length === 0, "no holder of orders");
const seen = [];
const stopOrders = node.watchEndpoint("orders", (holders) => seen.push(holders));
assert.deepEqual(seen, [[]], "the watch reports the holders at once");

assert.equal(await ctl(a.id, { op: "epRegister", key: "orders" }), "true");
assert.equal(await ctl(a.id, { op: "epRegister", key: "orders" }), "false", "held already");
await until(() => ids("orders").join() === a.id, "the tab resolves orders to the native");
const [holder] = node.resolve("orders");
assert.equal(holder.state, "alive");
assert.ok(holder.rttMicros === null || holder.rttMicros >= 0, `rttMicros ${holder.rttMicros}`);
await until(() => seen.at(-1)?.join() === a.id, "the watch sees the native register");
assert.deepEqual(node.endpoints().find((e) => e.name === "orders"), { name: "orders", holders: 1 });

for (const policy of [undefined, "any", "nearest", "all"]) {
  const replies = await node.requestEndpoint("orders", enc(`hello-${policy}`), policy && { policy });
  assert.equal(replies.length, 1);
  assert.equal(replies[0].from, a.id);
  assert.ok(replies[0].ok instanceof Uint8Array, `an answer, not ${replies[0].error}`);
  assert.equal(dec(replies[0].ok), `${a.name}:hello-${policy}`);
}

// Two holders: "all" fans out to both, one reply each.
await ctl(b.id, { op: "epRegister", key: "orders" });
await until(() => sorted(ids("orders")) === sorted([a.id, b.id]), "both natives hold orders");
await until(() => seen.at(-1) && sorted(seen.at(-1)) === sorted([a.id, b.id]), "the watch sees the second holder");
const all = await node.requestEndpoint("orders", enc("fan"), { policy: "all", timeoutMs: 10_000 });
assert.deepEqual(
  all.map((r) => `${r.from}=${r.ok ? dec(r.ok) : r.error.code}`).sort(),
  [`${a.id}=${a.name}:fan`, `${b.id}=${b.name}:fan`].sort(),
  "one answer from each holder",
);
const one = await node.requestEndpoint("orders", enc("one"));
assert.equal(one.length, 1, "any asks one holder");
assert.ok([a.id, b.id].includes(one[0].from));

// A stream by name carries bytes both ways (the natives echo).
const stream = await node.openStreamToEndpoint("orders", { policy: "nearest" });
assert.ok([a.id, b.id].includes(stream.peer), `streamed to ${stream.peer}`);
const writer = stream.writable.getWriter();
const reader = stream.readable.getReader();
const payload = `ping-by-name-${run}`;
await writer.write(enc(payload));
let back = "";
while (back.length < payload.length) {
  const { value, done } = await reader.read();
  assert.ok(!done, `the stream ended after ${back.length} bytes`);
  back += dec(value);
}
assert.equal(back, payload);
stream.close();

// A holder that unregisters disappears from the tab's resolution and its watch.
assert.equal(await ctl(b.id, { op: "epUnregister", key: "orders" }), "true");
await until(() => seen.at(-1)?.join() === a.id, "the watch sees the native unregister");
assert.deepEqual(ids("orders"), [a.id]);

// ----- the tab's name: resolved, requested and streamed to by the natives -----------------------
const jobs = `jobs-${run}`;
node.on("request", (req) => {
  if (req.topic === jobs) req.respond(enc(`tab:${dec(req.data)}`));
});
node.on("stream", (s) => {
  const r = s.readable.getReader();
  const w = s.writable.getWriter();
  (async () => {
    for (;;) {
      const { value, done } = await r.read();
      if (done) return;
      await w.write(enc(dec(value).toUpperCase()));
    }
  })().catch(() => {});
});
assert.equal(node.registerEndpoint(jobs), true);
assert.equal(node.registerEndpoint(jobs), false, "held already");
assert.deepEqual(ids(jobs), [node.id], "a holder resolves itself");
await assert.rejects(node.requestEndpoint(jobs, "x"), code("NO_HOLDER"), "a node never asks itself");
await ctl(c.id, { op: "epHolders", key: jobs, value: node.id });
assert.equal(await ctl(c.id, { op: "epRequest", key: jobs, value: "any", text: "from-native" }), `${node.id}=tab:from-native`);
assert.equal(await ctl(c.id, { op: "epRequest", key: jobs, value: "all", text: "all" }), `${node.id}=tab:all`);
assert.equal(await ctl(a.id, { op: "epStream", key: jobs, text: "abc-stream" }), `${node.id}:ABC-STREAM`);

// A second tab holds a name; the first watches it and sees it go when that tab leaves.
const other = await GossipNode.create({ ...base, name: "ep-js-2" });
const shared = `shared-${run}`;
const sharedSeen = [];
const stopShared = node.watchEndpoint(shared, (holders) => sharedSeen.push(holders));
assert.equal(other.registerEndpoint(shared), true);
await until(() => sharedSeen.at(-1)?.join() === other.id, "the watch sees the other tab register");
await ctl(a.id, { op: "epHolders", key: shared, value: other.id });
await other.leave();
await until(() => sharedSeen.at(-1)?.length === 0, "the watch sees the holder leave");
await ctl(a.id, { op: "epHolders", key: shared, value: "" });
assert.deepEqual(sharedSeen, [[], [other.id], []]);
stopShared();

// Unregistering the tab's name removes it everywhere.
assert.equal(node.unregisterEndpoint(jobs), true);
assert.equal(node.unregisterEndpoint(jobs), false);
assert.deepEqual(ids(jobs), []);
await ctl(c.id, { op: "epHolders", key: jobs, value: "" });

// ----- tabs without the cluster key: a name reaches the cluster only with a state grant ----------
const as = (user) => seeds.map((s) => `${s}?user=${user}`);
const forbidden = async () =>
  (await ctl(a.id, { op: "drops", key: "forbidden", value: "0" }))
    .split(",")
    .reduce((sum, part) => sum + Number(part.split("=")[1]), 0);
const before = await forbidden();
// "tab*" users are admitted without state writes: the registration stays on the tab.
const plain = await GossipNode.create({ seeds: as(`tab${run}`), name: `tab-p${run}`, config: "local" });
const denied = `jobs-denied-${run}`;
assert.equal(plain.registerEndpoint(denied), true, "the tab cannot know its grant: it holds the name itself");
assert.deepEqual(ids(denied, plain), [plain.id]);
// "svc*" users may write state and send on "orders" and "jobs*".
const svc = await GossipNode.create({ seeds: as(`svc${run}`), name: `tab-s${run}`, config: "local" });
const granted = `jobs-granted-${run}`;
svc.on("request", (req) => req.respond(enc(`svc:${dec(req.data)}`)));
assert.equal(svc.registerEndpoint(granted), true);
await ctl(a.id, { op: "epHolders", key: granted, value: svc.id });
assert.equal(await ctl(b.id, { op: "epRequest", key: granted, value: "any", text: "x" }), `${svc.id}=svc:x`);
await until(() => ids("orders", svc).join() === a.id, "the admitted tab resolves orders");
const asked = await svc.requestEndpoint("orders", enc("from-svc"));
assert.deepEqual(asked.map((r) => [r.from, r.ok && dec(r.ok)]), [[a.id, `${a.name}:from-svc`]]);
// By then the plain tab's write was refused by its server (counted), and no one else holds it.
await ctl(a.id, { op: "drops", key: "forbidden", value: String(before + 1) });
await ctl(a.id, { op: "epHolders", key: denied, value: "" });
assert.deepEqual(ids(denied), [], "the full-member tab does not resolve it either");
assert.deepEqual(ids(denied, svc), [], "nor does the other admitted tab");
// Its requests by name are held to its grant's topics too: "orders" is not one, so no answer.
await until(() => ids("orders", plain).join() === a.id, "the plain tab resolves orders");
const refused = await plain.requestEndpoint("orders", enc("x"), { timeoutMs: 1_500 });
assert.deepEqual(refused.map((r) => [r.from, r.error?.code]), [[a.id, "TIMEOUT"]]);
await plain.leave();
await svc.leave();

// ----- the end: a stopped watch reports nothing more ------------------------------------------
stopOrders();
stopOrders();
const reported = seen.length;
await ctl(a.id, { op: "epUnregister", key: "orders" });
await until(() => ids("orders").length === 0, "orders released");
assert.equal(seen.length, reported, "a stopped watch reports nothing");
await node.leave();
console.log("endpoints.mjs: names from JavaScript both ways, policies, streams, watches, bad input and grants passed");
