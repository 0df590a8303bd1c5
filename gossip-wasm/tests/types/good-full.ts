// Must compile under `tsc --noEmit --strict` against the full flavour (`pkg-full/`, `cargo xtask
// wasm --full`): the replicated state, key ownership and named endpoints as an application uses
// them. Each
// `@ts-expect-error` is a mistake the types must catch.
import { GossipNode } from "../../pkg-full/index.js";
import type {
  EndpointHolder,
  EndpointName,
  EndpointReply,
  GossipError,
  GossipStream,
  StateChange,
  StateValue,
  Unsubscribe,
} from "../../pkg-full/index.js";

export function cart(node: GossipNode, peer: string): number {
  const version: number = node.setState("cart/apples", "3");
  node.setState("cart/raw", new Uint8Array([1, 2]));
  const deleted: number | undefined | null = node.deleteState("cart/raw");
  const v: StateValue | undefined = node.getState(peer, "cart/apples");
  const all: StateValue[] = node.stateEntries(peer);
  const stop: Unsubscribe = node.watchState("cart/", (c: StateChange) => {
    console.log(c.owner, c.key, c.version, c.value === null ? "deleted" : c.text);
  });
  node.on("state", (c) => console.log(c.key));
  node.on("stateCleared", ({ owner }) => console.log(owner));
  stop();
  const owner: string | undefined = node.owner("orders/17");
  const owners: string[] = node.owners(new Uint8Array([1]), 3);
  // @ts-expect-error: values are strings or bytes
  node.setState("cart/n", 5);
  // @ts-expect-error: a watch takes a listener
  node.watchState("cart/");
  console.log(deleted, v?.text, all.length, owner, owners);
  return version;
}

export async function orders(node: GossipNode): Promise<number> {
  const registered: boolean = node.registerEndpoint("orders");
  const dropped: boolean = node.unregisterEndpoint("orders");
  const holders: EndpointHolder[] = node.resolve("orders");
  const rtt: number | null = holders[0].rttMicros;
  const names: EndpointName[] = node.endpoints();
  const replies: EndpointReply[] = await node.requestEndpoint("orders", { n: 1 }, { policy: "all", timeoutMs: 2_000 });
  for (const r of replies) {
    if (r.ok) console.log(r.from, r.ok.byteLength);
    else console.log(r.from, r.error.code === "TIMEOUT");
  }
  const failed: GossipError | undefined = replies[0].error;
  const stream: GossipStream = await node.openStreamToEndpoint("orders", { policy: "nearest" });
  const stop: Unsubscribe = node.watchEndpoint("orders", (ids: string[]) => console.log(ids.length));
  stop();
  // @ts-expect-error: a stream goes to one holder
  await node.openStreamToEndpoint("orders", { policy: "all" });
  // @ts-expect-error: not a policy
  await node.requestEndpoint("orders", "x", { policy: "first" });
  // @ts-expect-error: names are strings
  node.registerEndpoint(7);
  // @ts-expect-error: a watch takes a listener
  node.watchEndpoint("orders");
  console.log(registered, dropped, rtt, names.length, failed, stream.peer);
  return holders.length;
}
