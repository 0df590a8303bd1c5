// Browser entry: loads the WebAssembly module next to this file, then exposes the API.
import init from "./web/gossip_wasm.js";

await init({ module_or_path: new URL("./web/gossip_wasm_bg.wasm", import.meta.url) });

export { GossipNode, GossipStream, Group, Message } from "./api.js";
