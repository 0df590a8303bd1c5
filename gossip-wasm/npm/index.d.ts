// Exactly what index.js and node.js export: the classes, and the types that describe them. Not
// `export *`: the generated module also declares its loader (`default`, `initSync`), which the
// package entries call themselves and do not export.
export { GossipNode, GossipStream, Group, Message } from "./web/gossip_wasm.js";
export type {
  Data,
  GossipError,
  GossipNodeEvents,
  GossipOptions,
  GroupChangeEvent,
  GroupCriteria,
  GroupEvents,
  ListenOptions,
  MemberEvent,
  MemberInfo,
  MemberJoinedOptions,
  NodeStats,
  QuorumOptions,
  QuorumOutcome,
  RequestOptions,
  SendOptions,
  Unsubscribe,
} from "./web/gossip_wasm.js";
