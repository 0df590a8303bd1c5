// Node.js entry: Node's fetch cannot load file: URLs, so the module is read from disk.
// Node 20 needs `--experimental-websocket` (or `globalThis.WebSocket = (await import("ws")).WebSocket`).
import { readFile } from "node:fs/promises";
import init from "./web/gossip_wasm.js";

await init({ module_or_path: await readFile(new URL("./web/gossip_wasm_bg.wasm", import.meta.url)) });

export { GossipNode, GossipStream, Group, Message } from "./web/gossip_wasm.js";
