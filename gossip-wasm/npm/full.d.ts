// The full flavour (`pkg-full/`): the replicated state's types too (appended to index.d.ts).
export type { StateChange, StateValue } from "./web/gossip_wasm.js";
