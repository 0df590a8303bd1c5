// The full flavour (`pkg-full/`): the replicated state's and named endpoints' types too
// (appended to index.d.ts).
export type { StateChange, StateValue } from "./web/gossip_wasm.js";
export type {
  EndpointHolder,
  EndpointName,
  EndpointPolicy,
  EndpointReply,
  EndpointRequestOptions,
  EndpointStreamOptions,
} from "./web/gossip_wasm.js";
