// Must compile under `tsc --noEmit --strict` against the full flavour (`pkg-full/`, `cargo xtask
// wasm --full`): the replicated state and key ownership as an application uses them. Each
// `@ts-expect-error` is a mistake the types must catch.
import { GossipNode } from "../../pkg-full/index.js";
import type { StateChange, StateValue, Unsubscribe } from "../../pkg-full/index.js";

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
