// Must compile under `tsc --noEmit --strict` (see xtask/src/wasm.rs): how an application uses the
// package, as the README shows it. Each `@ts-expect-error` is a mistake the types must catch; an
// error that no longer happens fails the check too.
import { GossipNode, Group, Message } from "../../pkg/index.js";
import type { GossipError, GossipStream, MemberEvent, MemberInfo, QuorumOptions, QuorumOutcome, Unsubscribe } from "../../pkg/index.js";

export async function app(key: string): Promise<void> {
  const node: GossipNode = await GossipNode.create({
    name: "tab-1",
    seeds: ["ws://127.0.0.1:8080/gossip/ws"],
    clusterKey: key,
    metadata: { role: "viewer" },
  });
  node.on("memberJoined", (m: MemberEvent) => console.log("joined:", m.id, "name" in m ? m.name : m.short));
  node.on("message", (msg: Message) => {
    const v: unknown = msg.value();
    const chat = msg.value<{ text: string }>();
    console.log(msg.topic, v, chat.text.toUpperCase(), msg.text(), msg.data.byteLength);
  });
  node.on("disconnected", ({ reason, code }) => console.log(reason, code.toLowerCase()));
  node.on("stream", async (stream: GossipStream) => {
    const reader = stream.readable.getReader();
    const { value, done } = await reader.read();
    if (!done) {
      const bytes: Uint8Array = value;
      console.log(bytes.length);
    }
    const writer = stream.writable.getWriter();
    await writer.write(new Uint8Array([1, 2, 3]));
  });
  node.broadcast("chat", { text: "hello from a tab" });
  const workers: Group = node.group("role=worker");
  workers.on("added", (m) => console.log(m.id));
  const first: MemberInfo | undefined = workers.members()[0];
  if (first) {
    try {
      const answer = await node.request(first.id, { op: "ping" }, { timeoutMs: 2000 });
      console.log(answer.value<number>() + 1);
    } catch (e) {
      console.log((e as GossipError).code);
    }
  }

  // Every member once: those already known, then each later join.
  const stopJoins: Unsubscribe = node.on("memberJoined", (m) => console.log(m.id), { replay: true });
  stopJoins();
  const stopOnce: () => void = node.once("connected", ({ url }) => console.log(url.length));
  stopOnce();
  node.once("memberJoined", (m: MemberEvent) => console.log(m.short), { replay: false });
  const logAdded = (m: MemberEvent) => console.log(m.id);
  const stopAdded: Unsubscribe = workers.on("added", logAdded);
  workers.once("removed", (m) => console.log(m.short));
  workers.off("added", logAdded);
  stopAdded();
  const controller = new AbortController();
  try {
    await node.request("id", "data", { topic: "q", timeoutMs: 100, signal: controller.signal });
  } catch (e) {
    const code = (e as GossipError).code;
    if (code === "ABORTED" || code === "NO_WEBSOCKET") console.log(code);
    // @ts-expect-error: not an error code.
    if (code === "ABORT") console.log(code);
  }

  // @ts-expect-error: only memberJoined replays.
  node.on("message", () => {}, { replay: true });
  // @ts-expect-error: replay is a boolean.
  node.on("memberJoined", () => {}, { replay: "yes" });
  // @ts-expect-error: a signal is an AbortSignal.
  void node.request("id", "data", { signal: controller });
  // @ts-expect-error: a group has no such event to remove.
  workers.off("joined", logAdded);
  // @ts-expect-error: the wrong listener type for once.
  node.once("message", (m: MemberInfo) => console.log(m.name));

  // @ts-expect-error: a misspelt event name.
  node.on("memberjoined", () => {});
  // @ts-expect-error: the wrong listener for the event.
  node.on("message", (m: MemberInfo) => console.log(m.name));
  // @ts-expect-error: a group has no such event.
  workers.on("joined", () => {});
  node.on("message", (msg) => {
    const v = msg.value();
    // @ts-expect-error: without a type argument the value is `unknown`, not `any`.
    const s: string = v;
    console.log(s);
  });
  node.on("stream", async (stream) => {
    const { value } = await stream.readable.getReader().read();
    // @ts-expect-error: chunks are bytes.
    const s: string | undefined = value;
    console.log(s);
  });
}

export async function quorum(node: GossipNode, ids: string[]): Promise<boolean> {
  const outcome: QuorumOutcome = await node.quorumRequest(ids, { op: "lock" }, { topic: "locks", quorum: "majority", timeoutMs: 2000 });
  for (const answer of outcome.answered) console.log(answer.from, answer.value<{ granted: boolean }>().granted);
  for (const f of outcome.failed) console.log(f.member, f.reason === "timeout" || f.reason === "memberDown" || f.reason === "unreachable");
  const options: QuorumOptions = { quorum: 2 };
  await node.quorumRequest(ids, "x", options);
  // @ts-expect-error: a quorum is "first", "majority", "all" or a number
  await node.quorumRequest(ids, "x", { quorum: "most" });
  // @ts-expect-error: members are an array of ids
  await node.quorumRequest(ids[0], "x");
  return outcome.reached && outcome.unanswered.length === 0;
}
