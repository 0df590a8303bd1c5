// The JavaScript side of the admitted-member test (admitted.rs): a trusted observer (a full member,
// given the cluster key as only a trusted client would be) that asks the native harness (topic
// "ctl") what the servers see and count, and the keyless tabs an application would create.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function until(cond, what, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await sleep(20);
  }
}

/** A full member that sees the 3 native nodes alive. */
export async function observer(create, seeds, key, token) {
  const node = await create({ seeds, clusterKey: key, token, name: "observer", config: "local" });
  await until(() => natives(node).length === 3, "the observer sees the 3 native nodes alive");
  return node;
}

/** The native nodes `node` sees alive, as [{ name, id, incarnation }]. */
function natives(node) {
  return node
    .members()
    .filter((m) => /^n\d$/.test(m.name) && m.state === "alive")
    .map((m) => ({ name: m.name, id: m.id, incarnation: m.incarnation }));
}

/** The native nodes the observer sees alive, as JSON. */
export function nativesJson(node) {
  return JSON.stringify(natives(node));
}

/** Asks the observer's server to run `op`; returns its detail, throws when it did not hold. */
export async function ctl(node, op, member, key, value) {
  const cmd = { op, member, key, value, state: value };
  const reply = (await node.request(node.server, cmd, { topic: "ctl", timeoutMs: 30_000 })).value();
  if (!reply.ok) throw new Error(`ctl ${op} ${member} ${key} ${value}: ${reply.detail}`);
  return reply.detail;
}

/** The drops for `reason` summed over the live native nodes. */
export async function drops(node, reason) {
  const detail = await ctl(node, "drops", "", reason, "0");
  return detail
    .split(",")
    .filter((p) => p.includes("="))
    .reduce((sum, p) => sum + Number(p.split("=")[1]), 0);
}

/** A promise of the first `chat` broadcast from `from` the observer receives (its text). */
export function chatFrom(node, from, ms = 30_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no chat from ${from} within ${ms} ms`)), ms);
    const listener = (m) => {
      if (m.topic !== "chat" || m.from !== from) return;
      clearTimeout(timer);
      node.off("message", listener);
      resolve(m.text());
    };
    node.on("message", listener);
  });
}

/** Whether every native node is alive in the observer's own view. */
export function allNativesAlive(node) {
  return natives(node).length === 3;
}

async function rejectsWith(promise, code) {
  try {
    await promise;
  } catch (e) {
    check(e.code === code, `expected error code ${code}, got ${e.code}: ${e.message}`);
    return e.message;
  }
  throw new Error(`expected a rejection with code ${code}`);
}

/**
 * Tabs as an application creates them, without the cluster key: one the hook refuses, one it
 * admits and the test revokes, one admitted for a short while.
 */
export async function keylessTabs(create, obs, seeds) {
  const as = (user) => seeds.map((s) => `${s}?user=${user}`);

  // Refused by the hook: the typed error, with the hook's reason.
  const refused = await rejectsWith(create({ seeds: as("mallory"), name: "tab-m", config: "local" }), "NOT_ADMITTED");
  check(/unknown user mallory/.test(refused), `the hook's reason: ${refused}`);
  await ctl(obs, "drops", "", "ws_not_admitted", "3");

  // Admitted without the key: every server sees it, with the server that admitted it.
  const tab = await create({ seeds: as("tabjs"), name: "tab-js", config: "local" });
  await ctl(obs, "state", tab.id, "", "alive");
  await ctl(obs, "admitted", tab.id, "", tab.server);
  // Revoked (and refused from now on): the other servers see it left.
  const gone = new Promise((resolve) => tab.on("disconnected", resolve));
  await ctl(obs, "revoke", tab.id, "tabjs", "");
  const why = await gone;
  check(why.code === "NOT_ADMITTED", `the tab is told it was revoked: ${why.code} ${why.reason}`);
  await ctl(obs, "state", tab.id, "", "left");

  // Admitted for a few seconds: when its admission expires every server sees it left.
  const brief = await create({ seeds: as("brief1"), name: "tab-brief", config: "local" });
  await ctl(obs, "admitted", brief.id, "", brief.server);
  await ctl(obs, "state", brief.id, "", "left");
  return "ok";
}
