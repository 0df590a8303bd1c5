export * from "./web/gossip_wasm.js";
