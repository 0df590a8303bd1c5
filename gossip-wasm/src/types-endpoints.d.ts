
/** A live holder of an endpoint name, as this node sees it. */
export interface EndpointHolder {
  id: string;
  /** Alive or suspect (dead and departed members hold nothing). */
  state: "alive" | "suspect";
  /** The round-trip time of this node's last direct probe of it, in microseconds (null: never probed). */
  rttMicros: number | null;
}

/** A name some live member holds, with its number of holders. */
export interface EndpointName {
  name: string;
  holders: number;
}

/**
 * How to choose among the live holders other than this node: one at random (`any`, the
 * default), the one with the smallest measured round-trip time (`nearest`), every one (`all`).
 */
export type EndpointPolicy = "any" | "nearest" | "all";

/** Options of `requestEndpoint`. */
export interface EndpointRequestOptions {
  policy?: EndpointPolicy;
  /** How long each holder has to answer (default 5000). */
  timeoutMs?: number;
}

/** Options of `openStreamToEndpoint`: a stream goes to one holder, so not `all`. */
export interface EndpointStreamOptions {
  policy?: "any" | "nearest";
}

/** One holder's answer to `requestEndpoint` (`ok`: its bytes), or why there is none (`error`: `TIMEOUT`, `MEMBER_DOWN`...). */
export type EndpointReply =
  | { from: string; ok: Uint8Array; error?: undefined }
  | { from: string; ok?: undefined; error: GossipError };

export interface GossipNode {
  /**
   * Sends `data` as a request (topic: the name) to the holder(s) of `name` picked by
   * `options.policy`, this node excluded, and resolves with one reply per holder asked once each
   * answered, failed or timed out. Rejects (nothing sent) with `NO_HOLDER` when no other live
   * member holds the name, `INVALID_ARGUMENT` for a bad name or option, `TOO_MANY_REQUESTS`.
   */
  requestEndpoint(name: string, data: Data, options?: EndpointRequestOptions): Promise<EndpointReply[]>;
  /**
   * Calls `listener` with the ids of the live holders of `name` (in id order) now, before it
   * returns, then each time that set changes (a registration, an unregister, a holder's death
   * or leave); returns the function that stops the watch.
   */
  watchEndpoint(name: string, listener: (holders: string[]) => void): Unsubscribe;
}
