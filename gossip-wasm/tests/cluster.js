// The browser side of the cluster test: uses the package's JavaScript API as an application
// would, and asks the native harness (topic "ctl") what the native side sees.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function until(cond, what, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await sleep(20);
  }
}

function once(node, event, pred = () => true, ms = 20_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} event within ${ms} ms`)), ms);
    const listener = (e) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      node.off(event, listener);
      resolve(e);
    };
    node.on(event, listener);
  });
}

async function rejectsWith(promise, code) {
  try {
    await promise;
  } catch (e) {
    check(e.code === code, `expected error code ${code}, got ${e.code}: ${e.message}`);
    check(e instanceof Error && e.message.length > 0, "a JS Error with a message");
    return e.message;
  }
  throw new Error(`expected a rejection with code ${code}`);
}

export async function scenario(create, seeds, key, token) {
  const base = { seeds, clusterKey: key, token, config: "local" };

  // Wrong credentials are refused with a clear, coded error.
  const wrongKey = await rejectsWith(create({ ...base, clusterKey: "ab".repeat(32) }), "CLUSTER_KEY");
  check(/cluster key/.test(wrongKey), `message names the key: ${wrongKey}`);
  const wrongToken = await rejectsWith(create({ ...base, token: "not-the-token" }), "UNAUTHORIZED");
  check(/token/.test(wrongToken), `message names the token: ${wrongToken}`);

  const node = await create({ ...base, name: "tab", metadata: { kind: "browser" } });
  const natives = () => node.members().filter((m) => !m.self && m.state === "alive");
  await until(() => natives().length === 3, "the tab sees the 3 native nodes alive");
  const notServer = () => natives().find((m) => m.id !== node.server).id;
  const ctl = async (to, cmd) => {
    const reply = (await node.request(to, cmd, { topic: "ctl", timeoutMs: 30_000 })).value();
    check(reply.ok, `ctl ${cmd.op}: ${reply.detail}`);
    return reply;
  };

  // Metadata owned by the tab reaches every native node.
  node.setMetadata("color", "blue");
  await ctl(notServer(), { op: "meta", key: "color", value: "blue" });

  // A native broadcast reaches the tab.
  const news = once(node, "message", (m) => m.topic === "news");
  await ctl(notServer(), { op: "broadcast", topic: "news", text: "hello tab" });
  const got = await news;
  check(got.kind === "broadcast" && got.value() === "hello tab", "broadcast content");

  // A native node asks the tab and gets its answer.
  node.on("request", (req) => req.respond(`echo:${req.value()}`));
  const answer = await ctl(notServer(), { op: "request", topic: "q", text: "ping" });
  check(answer.detail === "echo:ping", `the native got ${answer.detail}`);

  // A stream carries 1 MB both ways intact (the native end echoes).
  const size = 1024 * 1024;
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  const stream = await node.openStream(notServer());
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  const writing = (async () => {
    for (let i = 0; i < size; i += 16384) await writer.write(data.subarray(i, i + 16384));
  })();
  const back = new Uint8Array(size);
  let read = 0;
  while (read < size) {
    const { value, done } = await reader.read();
    check(!done, `stream ended after ${read} bytes`);
    check(read + value.length <= size, "no extra bytes");
    back.set(value, read);
    read += value.length;
  }
  await writing;
  check(back.every((b, i) => b === data[i]), "the echoed megabyte is intact");
  stream.close();

  // The tab's server dies: it re-joins through another seed and is seen alive again.
  const oldServer = node.server;
  const witness = natives().find((m) => m.id !== oldServer).id;
  const rejoined = once(node, "connected", () => true, 30_000);
  await ctl(witness, { op: "kill", member: oldServer });
  await rejoined;
  check(node.server && node.server !== oldServer, "relays through a new server");
  await ctl(node.server, { op: "state", state: "alive" });

  // The tab leaves; the natives see it left (asked by a second tab).
  const me = node.id;
  await node.leave();
  const observer = await create({ ...base, name: "observer" });
  await until(() => observer.members().some((m) => m.id === observer.server && m.state === "alive"), "observer joined");
  const reply = (await observer.request(observer.server, { op: "state", member: me, state: "left" }, { topic: "ctl", timeoutMs: 30_000 })).value();
  check(reply.ok, `natives see the tab left: ${reply.detail}`);
  await observer.leave();
  return "ok";
}
