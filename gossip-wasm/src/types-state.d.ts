/** One key of a member's replicated state, as this node holds it. */
export interface StateValue {
  key: string;
  value: Uint8Array;
  /** The value as UTF-8 text (invalid sequences replaced). */
  text: string;
  /** The owner's version at the write (larger is newer). */
  version: number;
}

/** A `state` event: a watched key of some member's state changed (`value` null: deleted). */
export interface StateChange {
  /** The member whose state it is. */
  owner: string;
  key: string;
  version: number;
  value: Uint8Array | null;
  text: string | null;
}

export interface GossipNodeEvents {
  /** A key under an open `watchState` prefix changed (any prefix: filter on `key`). */
  state: (change: StateChange) => void;
  /** A member's whole state was dropped (it died, left or restarted), while a watch is open. */
  stateCleared: (event: { owner: string }) => void;
}

export interface GossipNode {
  /**
   * Calls `listener` with every change of a key starting with `prefix`, in any member's state
   * (this node's included); returns the function that stops the watch.
   */
  watchState(prefix: string, listener: (change: StateChange) => void): Unsubscribe;
}
