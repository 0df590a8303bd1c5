// `require("gossip-wasm")`: the package is an ES module that loads its WebAssembly with
// top-level await, which `require` cannot wait for. Say so, and how to load it instead.
const e = new Error(
  'gossip-wasm is an ES module (it loads its WebAssembly with top-level await) and cannot be ' +
    'loaded with require(): use `import { GossipNode } from "gossip-wasm"`, or from CommonJS ' +
    '`const { GossipNode } = await import("gossip-wasm")`',
);
e.code = "ERR_REQUIRE_ESM";
throw e;
