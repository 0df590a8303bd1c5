// A Node.js without a global WebSocket (Node 20 without --experimental-websocket; deleted here so
// the test means the same on later versions) and without the `ws` package: the package still
// imports, and `create` rejects with NO_WEBSOCKET naming the fixes, before any network use.
import assert from "node:assert/strict";

delete globalThis.WebSocket;
assert.equal(typeof globalThis.WebSocket, "undefined");
await assert.rejects(import("ws"), "this test needs `ws` absent");

const { GossipNode } = await import("gossip-wasm");
await assert.rejects(GossipNode.create({ seeds: ["ws://127.0.0.1:9/gossip/ws"] }), (e) => {
  assert.equal(e.name, "GossipError");
  assert.equal(e.code, "NO_WEBSOCKET");
  assert.match(e.message, /npm install ws/);
  assert.match(e.message, /--experimental-websocket/);
  assert.ok(e.cause, "the failed import of ws is the cause");
  return true;
});
console.log("no-websocket.mjs: NO_WEBSOCKET names the fixes");
