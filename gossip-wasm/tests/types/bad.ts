// Must NOT compile under `tsc --noEmit --strict` (see xtask/src/wasm.rs): an event name with the
// wrong case. With a catch-all `on(event: string, ...)` overload in the types, it would compile
// and the listener would never be called.
import { GossipNode } from "../../pkg/index.js";

export function typo(node: GossipNode): void {
  node.on("memberjoined", (m) => console.log(m));
}
