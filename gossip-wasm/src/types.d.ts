
/** Message data: raw bytes, or any JSON-able value (sent as MessagePack, readable with `message.value()`). */
export type Data = Uint8Array | ArrayBuffer | string | number | boolean | null | Data[] | { [key: string]: Data | undefined };

/** Options of `GossipNode.create`. */
export interface GossipOptions {
  /** Human-friendly name (default "browser"). */
  name?: string;
  /** WebSocket URLs of servers (`ws://host:port/gossip/ws`), tried in turn; when the current one dies the node re-joins through another. */
  seeds: string | string[];
  /**
   * Omit it (the normal case): the tab joins as an admitted member; the server's admission hook
   * decides (refusal: `NOT_ADMITTED`) and each link is encrypted with a key agreed with that server.
   * The cluster key (64 hex digits, base64 of 32 bytes, or 32 bytes) makes it a full member: only
   * for trusted clients, since anyone who can read the page can read the key.
   */
  clusterKey?: string | Uint8Array;
  /** Token the servers require (sent as the `token` query parameter). */
  token?: string;
  /** Initial metadata of this node. */
  metadata?: Record<string, string | Uint8Array>;
  /** Protocol timing preset, as the cluster's (default "lan"). */
  config?: "lan" | "wan" | "local";
  /** A 32-byte secret to keep the same id across page loads (default: a fresh one). */
  identity?: Uint8Array;
  /** How long a seed may take to let the node in (default 5000). */
  connectTimeoutMs?: number;
}

/** Options of `send` and `group.send`. */
export interface SendOptions { topic?: string }

/** Options of `request`. */
export interface RequestOptions {
  topic?: string;
  /** How long to wait for the answer (default 5000). */
  timeoutMs?: number;
  /**
   * Aborting it rejects the request at once with `code` `ABORTED` (an answer arriving later is
   * dropped). The node still counts the request against its limit of outstanding requests
   * until `timeoutMs` passes.
   */
  signal?: AbortSignal;
}

/** Options of `GossipNode.quorumRequest`. */
export interface QuorumOptions {
  topic?: string;
  /** How long each member has to answer (default 5000). */
  timeoutMs?: number;
  /** How many answers complete it: the first, more than half (the default), all, or at least this many. */
  quorum?: "first" | "majority" | "all" | number;
}

/** How a quorum request ended (it resolves with this whether or not the quorum was reached). */
export interface QuorumOutcome {
  /** Whether enough members answered. */
  reached: boolean;
  /** The answers gathered by then, in arrival order (`kind` "response"; `from` says who). */
  answered: Message[];
  /** Members that could not answer: not live when it started, down before answering, or silent until the timeout. */
  failed: { member: string; reason: "timeout" | "memberDown" | "unreachable" }[];
  /** Members still outstanding when the outcome was decided (their late answers are ignored). */
  unanswered: string[];
}

/** Options of `GossipNode.on` and `GossipNode.once` for `memberJoined`. */
export interface MemberJoinedOptions {
  /**
   * First call the listener, before `on` returns, with every member this node knows alive or
   * suspect (itself excluded), then with every later join: each member exactly once, with no gap
   * between the snapshot and the events.
   */
  replay?: boolean;
}

/** The options `on` and `once` take for event `E`: only `memberJoined` has any. */
export type ListenOptions<E extends keyof GossipNodeEvents> = E extends "memberJoined" ? MemberJoinedOptions : never;

/** Removes the listener it was returned for (that registration only); calling it again does nothing. */
export type Unsubscribe = () => void;

/** A group's criteria: exact values, `true` (key present), `{ prefix }` or `{ contains }`. */
export type GroupCriteria = Record<string, string | Uint8Array | true | { prefix: string | Uint8Array } | { contains: string | Uint8Array }>;

/** A member as this node sees it. */
export interface MemberInfo {
  id: string;
  short: string;
  name: string;
  state: "alive" | "suspect" | "dead" | "left";
  /** Whether it is this node. */
  self: boolean;
  addrs: string[];
  /** The server it relays through, if it cannot be dialed. */
  relay: string | null;
  incarnation: number;
  /** Metadata values as UTF-8 text. */
  metadata: Record<string, string>;
  rttMs: number | null;
}

/** A member event whose member may already be forgotten (then only ids are known). */
export type MemberEvent = MemberInfo | { id: string; short: string };

/** A membership change of a group, as the node's `group` event reports it. */
export interface GroupChangeEvent { group: number; change: "added" | "removed" | "updated"; member: MemberEvent }

/** Counters of the core and the driver. */
export interface NodeStats {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
  drops: Record<string, number>;
  reconnects: number;
}

/** Errors thrown or rejected by this package. */
export interface GossipError extends Error {
  name: "GossipError";
  code:
    | "INVALID_OPTION" | "INVALID_ARGUMENT" | "ENCODE" | "DECODE" | "BUSY"
    | "UNAUTHORIZED" | "NOT_ADMITTED" | "VERSION" | "CLUSTER_KEY" | "ORIGIN_REFUSED" | "TOO_MANY_CONNECTIONS"
    | "PROTOCOL" | "CONNECT"
    | "UNKNOWN_MEMBER" | "TIMEOUT" | "MEMBER_DOWN" | "TOO_MANY_REQUESTS" | "METADATA_TOO_LARGE" | "LEFT"
    | "STREAM_CLOSED" | "TOO_MANY_STREAMS" | "TOO_MANY_GROUPS" | "REFUSED"
    /** The full flavour (`gossip-wasm-full`): a replicated-state limit; no other live holder of an endpoint name; policy "all" for a stream; too many names held. */
    | "STATE_LIMIT" | "NO_HOLDER" | "NOT_ONE" | "TOO_MANY_NAMES"
    /** A request whose `signal` was aborted. */
    | "ABORTED"
    /** Node.js without a global WebSocket and without the `ws` package. */
    | "NO_WEBSOCKET";
}

/** Listener types of `GossipNode.on`. */
export interface GossipNodeEvents {
  memberJoined: (member: MemberEvent) => void;
  memberAlive: (member: MemberEvent) => void;
  memberSuspect: (member: MemberEvent) => void;
  memberDead: (member: MemberEvent) => void;
  memberLeft: (member: MemberEvent) => void;
  metadata: (member: MemberEvent & { version: number }) => void;
  message: (message: Message) => void;
  request: (request: Message) => void;
  stream: (stream: GossipStream) => void;
  group: (event: GroupChangeEvent) => void;
  connected: (info: { url: string; server: string }) => void;
  disconnected: (info: { reason: string; code: string }) => void;
}

/** Listener types of `Group.on`. */
export interface GroupEvents {
  added: (member: MemberEvent) => void;
  removed: (member: MemberEvent) => void;
  updated: (member: MemberEvent) => void;
}

// The methods below are declared here rather than generated: wasm-bindgen would type `on` as
// `(event: string, listener: (event: any) => void)`, which accepts any misspelt event name, and
// `value()` as `any`.

export interface GossipNode {
  /**
   * Adds a listener for one of the events of `GossipNodeEvents`; returns the function that
   * removes it. `{ replay: true }` (for `memberJoined` only) first calls it with the members
   * already known.
   */
  on<E extends keyof GossipNodeEvents>(event: E, listener: GossipNodeEvents[E], options?: ListenOptions<E>): Unsubscribe;
  /** As `on`, for the next event only. */
  once<E extends keyof GossipNodeEvents>(event: E, listener: GossipNodeEvents[E], options?: ListenOptions<E>): Unsubscribe;
  /** Removes every registration of `listener` for `event` (made with `on` or `once`). */
  off<E extends keyof GossipNodeEvents>(event: E, listener: GossipNodeEvents[E]): void;
}

export interface Group {
  /** Adds a listener for one of the events of `GroupEvents`; returns the function that removes it. */
  on<E extends keyof GroupEvents>(event: E, listener: GroupEvents[E]): Unsubscribe;
  /** As `on`, for the next event only. */
  once<E extends keyof GroupEvents>(event: E, listener: GroupEvents[E]): Unsubscribe;
  /** Removes every registration of `listener` for `event`. */
  off<E extends keyof GroupEvents>(event: E, listener: GroupEvents[E]): void;
}

export interface Message {
  /**
   * The value a sender passed as non-bytes data (decoded from MessagePack); throws a
   * `GossipError` with `code` `DECODE` if the data is not MessagePack. `T` is not checked at run
   * time: validate what a peer sent before trusting its shape.
   */
  value<T = unknown>(): T;
}
