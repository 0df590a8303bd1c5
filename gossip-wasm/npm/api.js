// The parts of the API written in JavaScript rather than Rust: listener bookkeeping
// (unsubscribe functions, `once`, replaying current members) and abortable requests. They are
// here, not in the .wasm, because the .wasm has a size budget and none of this needs the core.
//
// Listeners are kept in JavaScript: the node holds one dispatcher per event that has listeners,
// and only while it has some (the node accepts incoming requests and streams only when someone
// listens for them, so an empty list must unregister the dispatcher).
import { GossipNode, Group } from "./web/gossip_wasm.js";

/** A `GossipError` as the .wasm raises them: an `Error` named `GossipError` with a `code`. */
export function gossipError(code, message, cause) {
  const e = cause === undefined ? new Error(message) : new Error(message, { cause });
  e.name = "GossipError";
  e.code = code;
  return e;
}

const invalidArgument = (argument, reason) =>
  gossipError("INVALID_ARGUMENT", `invalid argument \`${argument}\`: ${reason}`);

function call(fn, value) {
  try {
    fn(value);
  } catch (e) {
    // A throwing listener must not stop the others or the driver (as the .wasm does).
    console.error("gossip-wasm: a listener threw", e);
  }
}

/**
 * Listeners of one emitter (a node or a group), by event. `attach(event, dispatch)` and
 * `detach(event, dispatch)` register the dispatcher with the .wasm.
 */
class Listeners {
  constructor(attach, detach) {
    this.attach = attach;
    this.detach = detach;
    /** event -> { entries: { fn, once, skip }[], dispatch } */
    this.events = new Map();
  }

  add(event, fn, once, skip) {
    if (typeof fn !== "function") throw invalidArgument("listener", "must be a function");
    let slot = this.events.get(event);
    if (!slot) {
      const entries = [];
      const dispatch = (value) => {
        // A copy: listeners may add or remove listeners while the event is being delivered.
        for (const entry of entries.slice()) {
          if (!entries.includes(entry)) continue;
          if (entry.skip && entry.skip(value)) continue;
          if (entry.once) this.remove(event, entry);
          call(entry.fn, value);
        }
      };
      // Throws (INVALID_ARGUMENT) on an unknown event name, before anything is recorded.
      this.attach(event, dispatch);
      slot = { entries, dispatch };
      this.events.set(event, slot);
    }
    const entry = { fn, once, skip };
    slot.entries.push(entry);
    return entry;
  }

  has(event, entry) {
    return this.events.get(event)?.entries.includes(entry) ?? false;
  }

  /** The unsubscribe function of `entry`: removes that registration only, once. */
  unsubscribe(event, entry) {
    return () => this.remove(event, entry);
  }

  remove(event, entry) {
    const slot = this.events.get(event);
    if (!slot) return;
    const at = slot.entries.indexOf(entry);
    if (at >= 0) slot.entries.splice(at, 1);
    if (slot.entries.length === 0 && this.detach) {
      this.events.delete(event);
      this.detach(event, slot.dispatch);
    }
  }

  /** Removes every registration of `fn` (those made with `once` too). */
  removeFn(event, fn) {
    const slot = this.events.get(event);
    if (!slot) return;
    for (const entry of slot.entries.filter((e) => e.fn === fn)) this.remove(event, entry);
  }

  clear() {
    this.events.clear();
  }
}

const nodeOn = GossipNode.prototype.on;
const nodeOff = GossipNode.prototype.off;
const nodeRequest = GossipNode.prototype.request;
const groupOn = Group.prototype.on;
const groupRemove = Group.prototype.remove;
const registries = new WeakMap();

function listenersOf(emitter) {
  let l = registries.get(emitter);
  if (!l) {
    l =
      emitter instanceof Group
        ? // A group's dispatchers stay registered: nothing in the .wasm depends on them.
          new Listeners((event, f) => groupOn.call(emitter, event, f), null)
        : new Listeners(
            (event, f) => nodeOn.call(emitter, event, f),
            (event, f) => nodeOff.call(emitter, event, f),
          );
    registries.set(emitter, l);
  }
  return l;
}

/**
 * `{ replay: true }` on `memberJoined`: the listener is first called, before `on` returns, with
 * every member this node knows alive or suspect (itself excluded), then with every later join.
 * The snapshot and the registration happen in one synchronous step, and events reach
 * JavaScript only after the node computed them, so no member is missed. One case could repeat a
 * member: `on` called from inside a listener while a batch of events is being delivered (the
 * snapshot already holds the batch's later joins); those are skipped until the batch is over.
 */
function wantsReplay(event, options) {
  if (options === undefined || options === null) return false;
  if (typeof options !== "object") throw invalidArgument("options", "must be an object");
  const replay = options.replay;
  if (replay === undefined || replay === false) return false;
  if (replay !== true) throw invalidArgument("options.replay", "must be a boolean");
  if (event !== "memberJoined") {
    throw invalidArgument("options.replay", `only \`memberJoined\` replays, not \`${event}\``);
  }
  return true;
}

function listen(node, event, listener, options, once) {
  const replay = wantsReplay(event, options);
  const listeners = listenersOf(node);
  if (!replay) return listeners.unsubscribe(event, listeners.add(event, listener, once, null));
  if (typeof listener !== "function") throw invalidArgument("listener", "must be a function");
  const current = node
    .members()
    .filter((m) => !m.self && (m.state === "alive" || m.state === "suspect"));
  if (once && current.length > 0) {
    call(listener, current[0]);
    return () => {};
  }
  const replayed = new Set(current.map((m) => m.id));
  queueMicrotask(() => replayed.clear());
  const entry = listeners.add(event, listener, once, (m) => replayed.has(m.id));
  // Stops early if the listener unsubscribes itself meanwhile.
  for (const m of current) if (listeners.has(event, entry)) call(listener, m);
  return listeners.unsubscribe(event, entry);
}

GossipNode.prototype.on = function on(event, listener, options) {
  return listen(this, event, listener, options, false);
};

GossipNode.prototype.once = function once(event, listener, options) {
  return listen(this, event, listener, options, true);
};

GossipNode.prototype.off = function off(event, listener) {
  registries.get(this)?.removeFn(event, listener);
};

Group.prototype.on = function on(event, listener) {
  const l = listenersOf(this);
  return l.unsubscribe(event, l.add(event, listener, false, null));
};

Group.prototype.once = function once(event, listener) {
  const l = listenersOf(this);
  return l.unsubscribe(event, l.add(event, listener, true, null));
};

Group.prototype.off = function off(event, listener) {
  registries.get(this)?.removeFn(event, listener);
};

Group.prototype.remove = function remove() {
  registries.get(this)?.clear();
  return groupRemove.call(this);
};

function aborted(signal) {
  const why = signal.reason instanceof Error ? `: ${signal.reason.message}` : "";
  return gossipError("ABORTED", `the request was aborted${why}`, signal.reason);
}

GossipNode.prototype.request = function request(member, data, options) {
  const signal = options?.signal;
  if (signal === undefined) return nodeRequest.call(this, member, data, options);
  if (
    signal === null ||
    typeof signal !== "object" ||
    typeof signal.aborted !== "boolean" ||
    typeof signal.addEventListener !== "function"
  ) {
    return Promise.reject(invalidArgument("options.signal", "must be an AbortSignal"));
  }
  // Already aborted: nothing is sent.
  if (signal.aborted) return Promise.reject(aborted(signal));
  const pending = nodeRequest.call(this, member, data, options);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(aborted(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    // Both handlers are attached, so the node's late settlement of an aborted request (its
    // answer, or TIMEOUT) is dropped here rather than reported as an unhandled rejection.
    pending.then(
      (answer) => {
        signal.removeEventListener("abort", onAbort);
        resolve(answer);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
};

// The full flavour (`pkg-full/`, the `state` cargo feature) has the replicated state: a watch is
// the core's watch (so the node reports changes at all) plus a filtered `state` listener.
const watchRaw = GossipNode.prototype.watchStateRaw;
const unwatchRaw = GossipNode.prototype.unwatchStateRaw;
if (typeof watchRaw === "function") {
  GossipNode.prototype.watchState = function watchState(prefix, listener) {
    if (typeof prefix !== "string") throw invalidArgument("prefix", "must be a string");
    if (typeof listener !== "function") throw invalidArgument("listener", "must be a function");
    const id = watchRaw.call(this, prefix);
    const off = this.on("state", (change) => {
      if (change.key.startsWith(prefix)) listener(change);
    });
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      off();
      unwatchRaw.call(this, id);
    };
  };
}

// The full flavour's named endpoints (the `endpoints` cargo feature). A request by name is the
// core's: the .wasm sends it to the picked holders and hands back one pending answer each,
// gathered here into `{ from, ok }` or `{ from, error }`.
const requestEndpointRaw = GossipNode.prototype.requestEndpointRaw;
if (typeof requestEndpointRaw === "function") {
  GossipNode.prototype.requestEndpoint = function requestEndpoint(name, data, options) {
    let pending;
    try {
      // Throws for a bad name, data or option, NO_HOLDER, TOO_MANY_REQUESTS: nothing was sent.
      pending = requestEndpointRaw.call(this, name, data, options);
    } catch (e) {
      return Promise.reject(e);
    }
    return Promise.all(
      pending.map(([from, answer]) =>
        answer.then(
          (message) => {
            const ok = message.data;
            message.free();
            return { from, ok };
          },
          (error) => ({ from, error }),
        ),
      ),
    );
  };

  // The holders now, then each change: a state watch of the name's registration key (the
  // core's `endpoint/` + name, docs/ENDPOINTS.md) says when to look again (a registration or
  // unregister of this name, a member's state dropped), membership events too (a holder that
  // dies, leaves or becomes known), and the set is read back from the node each time, so the
  // listener sees what `resolve` gives. In JavaScript, not the .wasm: it needs nothing new there.
  GossipNode.prototype.watchEndpoint = function watchEndpoint(name, listener) {
    if (typeof listener !== "function") throw invalidArgument("listener", "must be a function");
    const ids = () => this.resolve(name).map((h) => h.id);
    // Throws for a bad name (the core's check) before anything is watched.
    let last = ids();
    const key = `endpoint/${name}`;
    const watch = watchRaw.call(this, key);
    let open = true;
    const check = () => {
      if (!open) return;
      const now = ids();
      if (now.length === last.length && now.every((id, i) => id === last[i])) return;
      last = now;
      call(listener, now);
    };
    const offs = [
      this.on("state", (change) => {
        if (change.key === key) check();
      }),
      this.on("stateCleared", check),
      this.on("memberJoined", check),
      this.on("memberDead", check),
      this.on("memberLeft", check),
    ];
    call(listener, last);
    return () => {
      if (!open) return;
      open = false;
      for (const off of offs) off();
      unwatchRaw.call(this, watch);
    };
  };
}

export { GossipNode, GossipStream, Group, Message } from "./web/gossip_wasm.js";
