// Must NOT compile under `tsc --noEmit --strict` (see xtask/src/wasm.rs): `replay` on an event
// other than memberJoined, which would throw INVALID_ARGUMENT at run time. With a catch-all
// options type it would compile.
import { GossipNode } from "../../pkg/index.js";

export function replayMessages(node: GossipNode): void {
  node.on("message", (m) => console.log(m.topic), { replay: true });
}
