// End-to-end test of the dashboard in real headless Chromium.
//
// Starts the demo on a free port (its own native cluster), opens the page in two tabs and checks
// what a user would: every native member alive and the tab itself a member; metadata set in the
// page reaches the native status endpoint; a broadcast from one tab shows in the other's log; a
// group filter selects the right members; a request gets a native member's answer; a member
// killed through the UI turns suspect, then dead, within the detection time the demo announces;
// restarting it brings it back alive. The members table shows which members are admitted (the
// tabs, which hold no cluster key) and by which native. The graph draws real probes (each arrow is one the demo
// server reports) and animates a broadcast to its receivers in order of arrival; incarnations
// read as ages. The page fits at 390, 1,400 and 1,920 px (no sideways overflow, every cell and
// button of the members table in view, no two graph labels overlapping), with a screenshot of
// each. Fails on any console error.
//
// Environment: CHROMIUM (default /usr/bin/chromium), SCREENSHOT (default ../../docs/dashboard.png;
// the per-width ones go beside it as dashboard-<width>.png), DEMO_CMD (JSON array, default: cargo
// run --locked -p web-demo --), DEMO_MEMBERS (default 7: the size a user reported clipping at),
// E2E_CONTINUE (1: go on after a failed step).

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOT = resolve(process.env.SCREENSHOT || resolve(root, "docs/dashboard.png"));
const DEMO_CMD = process.env.DEMO_CMD ? JSON.parse(process.env.DEMO_CMD) : ["cargo", "run", "--quiet", "--locked", "-p", "web-demo", "--"];
const MEMBERS = Number(process.env.DEMO_MEMBERS || 7);
const WIDTHS = [390, 1400, 1920];
const START_TIMEOUT_MS = 300_000; // includes building the demo when DEMO_CMD is `cargo run`
const STEP_TIMEOUT_MS = 30_000;
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run"];

const t0 = Date.now();
const secs = (ms) => (ms / 1000).toFixed(1) + " s";
let demo = null;
let browser = null;
const pages = []; // [name, page], for a screenshot of each when the test fails
const consoleErrors = [];
const demoPanics = [];
const results = { passed: 0, failed: 0 };
const figures = {};

// ---- process lifetime: the demo never outlives this script --------------------------------------

function killDemo(signal = "SIGKILL") {
  if (demo && demo.exitCode === null && demo.signalCode === null) {
    try { demo.kill(signal); } catch { /* already gone */ }
  }
}
process.on("exit", () => killDemo("SIGKILL"));
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => { console.error(`e2e: ${sig}, stopping`); killDemo("SIGKILL"); process.exit(130); });
}

function startDemo() {
  const [cmd, ...args] = DEMO_CMD;
  demo = spawn(cmd, [...args, "--port", "0", "--bind", "127.0.0.1", "--members", String(MEMBERS)], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info,gossip_server=warn" },
  });
  return new Promise((resolveUrl, reject) => {
    let buffered = "";
    const timer = setTimeout(() => reject(new Error(`the demo printed no URL within ${secs(START_TIMEOUT_MS)}`)), START_TIMEOUT_MS);
    demo.stderr.setEncoding("utf8");
    demo.stderr.on("data", (chunk) => {
      process.stderr.write(chunk);
      for (const m of chunk.matchAll(/panicked at [^\n]*/g)) demoPanics.push(m[0]);
    });
    demo.stdout.setEncoding("utf8");
    demo.stdout.on("data", (chunk) => {
      buffered += chunk;
      process.stdout.write(chunk.replace(/^/gm, "demo| "));
      const m = buffered.match(/dashboard: (http:\/\/[^\s]+)/);
      if (m) { clearTimeout(timer); resolveUrl(m[1]); }
    });
    demo.on("exit", (code, signal) => { clearTimeout(timer); reject(new Error(`the demo exited early (${code ?? signal})`)); });
    demo.on("error", (e) => { clearTimeout(timer); reject(e); });
  });
}

// ---- helpers ----------------------------------------------------------------------------------

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.passed += 1;
    console.log(`ok - ${name} (${secs(Date.now() - started)})`);
  } catch (e) {
    results.failed += 1;
    console.log(`not ok - ${name} (${secs(Date.now() - started)})\n  ${String(e.stack || e).replace(/\n/g, "\n  ")}`);
    // E2E_CONTINUE=1 goes on after a failure, to list every check that fails (later steps may
    // then fail only because an earlier one did).
    if (!process.env.E2E_CONTINUE) throw e;
  }
}

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  return r.json();
}

/** Polls `check` (returns a truthy value when done) every 100 ms until `timeoutMs`. */
async function until(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${secs(timeoutMs)} waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function openTab(context, baseUrl, name, seed) {
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(`${name}: console.error: ${m.text()}`); });
  page.on("pageerror", (e) => consoleErrors.push(`${name}: uncaught: ${e.message}`));
  page.on("requestfailed", (r) => { if (!r.url().startsWith("ws")) consoleErrors.push(`${name}: request failed: ${r.url()} ${r.failure()?.errorText}`); });
  pages.push([name, page]);
  await page.goto(`${baseUrl}?name=${name}&seed=${seed}`);
  await page.waitForSelector('#conn-status[data-status="connected"]', { timeout: STEP_TIMEOUT_MS });
  return page;
}

/** FNV-1a (32 bits) of the UTF-8 bytes of `s`, as the demo server digests a broadcast. */
function fnv1a(s) {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** Waits for two animation frames: whatever a resize changes is laid out and painted. */
const settled = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

/**
 * What does not fit at the current width: sideways overflow of the page, members-table cells or
 * buttons outside the panel's visible box or the viewport, graph labels overlapping each other or
 * leaving the graph. Returns a list of problems (empty: everything fits).
 */
const layoutProblems = (page) => page.evaluate(() => {
  const problems = [];
  const vw = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > vw + 0.5) problems.push(`the page is ${document.documentElement.scrollWidth} px wide in a ${vw} px viewport`);
  const panel = document.getElementById("panel-members");
  const pr = panel.getBoundingClientRect();
  const left = pr.left + panel.clientLeft, right = left + panel.clientWidth;
  if (panel.scrollWidth > panel.clientWidth + 0.5) problems.push(`the members panel scrolls sideways (${panel.scrollWidth} > ${panel.clientWidth} px)`);
  const cells = [...panel.querySelectorAll("#members th, #members td, #members button")];
  if (cells.filter((c) => c.matches("button")).length === 0) problems.push("no kill/restart buttons in the members table");
  for (const c of cells) {
    const r = c.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue; // not displayed (the header row on narrow screens)
    if (r.left < Math.max(left, 0) - 0.5 || r.right > Math.min(right, vw) + 0.5) {
      const row = c.closest("tr")?.dataset.name ?? "header";
      problems.push(`${row} ${c.tagName.toLowerCase()}.${c.className || c.dataset.action || c.textContent} spans ${r.left.toFixed(0)}..${r.right.toFixed(0)}, visible ${Math.max(left, 0).toFixed(0)}..${Math.min(right, vw).toFixed(0)}`);
    }
  }
  const svg = document.getElementById("graph").getBoundingClientRect();
  const labels = [...document.querySelectorAll("#graph text")].map((t) => ({ name: t.textContent, r: t.getBoundingClientRect() }));
  if (labels.length === 0) problems.push("no graph labels");
  for (const [i, a] of labels.entries()) {
    if (a.r.left < svg.left - 0.5 || a.r.right > svg.right + 0.5 || a.r.top < svg.top - 0.5 || a.r.bottom > svg.bottom + 0.5) problems.push(`graph label ${a.name} leaves the graph`);
    for (const b of labels.slice(i + 1)) {
      const w = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
      const h = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
      if (w > 0.5 && h > 0.5) problems.push(`graph labels ${a.name} and ${b.name} overlap`);
    }
  }
  return problems;
});

/** The state each row of the members table shows, by name. */
const tableStates = (page) => page.$$eval("#members tbody tr", (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.name, tr.dataset.state])));

// ---- the scenario -----------------------------------------------------------------------------

async function main() {
  const url = await startDemo();
  figures.demo_ready_s = (Date.now() - t0) / 1000;
  console.log(`e2e: demo at ${url} after ${secs(Date.now() - t0)}`);
  const cluster = await getJson(`${url}api/cluster`);
  const natives = cluster.natives.map((n) => n.name);
  // The natives require the demo's token, on /status as on the WebSocket.
  const statusUrl = (n) =>
    n.ws.replace(/^ws:/, "http:").replace(/\/ws$/, "/status") + `?token=${encodeURIComponent(cluster.token)}`;

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 1440, height: 1100 } });
  let a, b;

  await step(`tab A shows all ${natives.length} native members alive and itself as a member`, async () => {
    a = await openTab(context, url, "tab-a", "native-1");
    await until("every native alive in tab A", STEP_TIMEOUT_MS, async () => {
      const s = await tableStates(a);
      return natives.every((n) => s[n] === "alive") && s["tab-a"] === "alive";
    });
    const self = await a.$eval('#members tr[data-name="tab-a"]', (tr) => ({ cls: tr.className, id: tr.dataset.memberId }));
    if (self.cls !== "self" || !self.id) throw new Error(`tab-a's own row is not marked as this tab: ${JSON.stringify(self)}`);
  });

  await step("incarnations read as ages, the full value in the title", async () => {
    const incs = await a.$$eval("#members td.inc", (tds) => tds.map((td) => ({ row: td.closest("tr").dataset.name, text: td.textContent, title: td.title })));
    const native1 = (await getJson(`${url}api/cluster`)).natives.find((n) => n.name === "native-1").status.incarnation;
    for (const i of incs) {
      if (!/^\d+ (s|min|h|d) ago$/.test(i.text)) throw new Error(`${i.row}: incarnation shown as ${JSON.stringify(i.text)}`);
      if (!/^incarnation \d{13}$/.test(i.title)) throw new Error(`${i.row}: incarnation title ${JSON.stringify(i.title)}`);
    }
    const shown = incs.find((i) => i.row === "native-1");
    if (shown.title !== `incarnation ${native1}`) throw new Error(`native-1's incarnation is ${native1}, the title says ${shown.title}`);
  });

  const zone = `e2e-${Math.random().toString(36).slice(2, 8)}`;
  await step("metadata set in the page is visible in every native status endpoint", async () => {
    await a.fill("#meta-key", "zone");
    await a.fill("#meta-value", zone);
    const setAt = Date.now();
    await a.click("#meta-set");
    await until(`zone=${zone} for tab-a in /gossip/status of every native`, STEP_TIMEOUT_MS, async () => {
      const statuses = await Promise.all(cluster.natives.map((n) => getJson(statusUrl(n))));
      return statuses.every((s) => s.members.some((m) => m.name === "tab-a" && m.metadata?.zone === zone));
    });
    figures.metadata_spread_s = (Date.now() - setAt) / 1000;
  });

  await step("a second tab joins; each tab sees the other as a member", async () => {
    b = await openTab(context, url, "tab-b", "native-2");
    await until("tab-b alive in tab A and tab-a alive in tab B", STEP_TIMEOUT_MS, async () => {
      const [sa, sb] = await Promise.all([tableStates(a), tableStates(b)]);
      return sa["tab-b"] === "alive" && sb["tab-a"] === "alive" && natives.every((n) => sb[n] === "alive");
    });
  });

  await step("the members table says which members are admitted and by whom", async () => {
    // Each tab was admitted by the native it connected to (its seed), as every native's status
    // reports; natives hold the cluster key.
    const admittedBy = (page) => page.$$eval("#members tbody tr", (trs) =>
      Object.fromEntries(trs.map((tr) => [tr.dataset.name, { by: tr.dataset.admittedBy, text: tr.querySelector("td.admitted").textContent }])));
    const ids = Object.fromEntries((await getJson(`${url}api/cluster`)).natives.map((n) => [n.name, n.id]));
    const want = { "tab-a": "native-1", "tab-b": "native-2" };
    for (const page of [a, b]) {
      await until("both tabs shown as admitted by their servers", STEP_TIMEOUT_MS, async () => {
        const rows = await admittedBy(page);
        return Object.entries(want).every(([tab, native]) => rows[tab]?.by === ids[native] && rows[tab]?.text === native);
      });
      const rows = await admittedBy(page);
      for (const n of natives) {
        if (rows[n].by !== "" || rows[n].text !== "full member") throw new Error(`${n} is shown as ${JSON.stringify(rows[n])}, not a full member`);
      }
    }
    // The natives agree: every status names the same admitting server for each tab.
    const statuses = await Promise.all(cluster.natives.map((n) => getJson(statusUrl(n))));
    for (const [tab, native] of Object.entries(want)) {
      for (const st of statuses) {
        const m = st.members.find((x) => x.name === tab);
        if (m?.admitted_by !== ids[native] || !(m.admission_expires_ms > Date.now())) throw new Error(`${st.name} reports ${tab} as ${JSON.stringify(m)}`);
      }
    }
  });

  await step("the graph's arrows are probes the natives report, natives probing the tabs among them", async () => {
    const tabIds = await a.$$eval("#members tbody tr", (trs) => trs.filter((tr) => tr.dataset.name.startsWith("tab-")).map((tr) => tr.dataset.memberId));
    // A native probes each other member about once per round (one probe a second, nine members).
    await until("an arrow from a native to a tab in tab A's graph", STEP_TIMEOUT_MS, async () =>
      (await a.$$eval("#graph line.edge.probe", (ls) => ls.map((l) => l.dataset.to))).some((to) => tabIds.includes(to)));
    const edges = await a.$$eval("#graph line.edge.probe", (ls) => ls.map((l) => ({ from: l.dataset.from, to: l.dataset.to, ago: Number(l.dataset.ago) })));
    const reported = await getJson(`${url}api/cluster`);
    const nativeIds = new Set(reported.natives.map((n) => n.id));
    const selfId = await a.$eval('#members tr[data-name="tab-a"]', (tr) => tr.dataset.memberId);
    let checked = 0;
    for (const e of edges) {
      if (e.from === selfId) continue; // this tab's own probes, from its own node
      if (!nativeIds.has(e.from)) throw new Error(`an arrow from ${e.from}, neither a native nor this tab`);
      const n = reported.natives.find((n) => n.id === e.from);
      // The server lists probes of the last 30 s: one the page drew a moment ago is still there.
      const p = n.probes.find((p) => p.to === e.to);
      if (!p) throw new Error(`${n.name} → ${e.to} is drawn but ${n.name} reports no such probe: ${JSON.stringify(n.probes)}`);
      if (!(e.ago <= 4000)) throw new Error(`${n.name} → ${e.to} is drawn ${e.ago} ms after the probe, past the graph's 4 s window`);
      checked += 1;
    }
    if (checked < 3) throw new Error(`only ${checked} native probe arrows drawn: ${JSON.stringify(edges)}`);
    // Not a mesh: only pairs probed lately are joined (a full mesh of nine would have 72 arrows).
    const pairs = new Set(edges.map((e) => `${e.from}>${e.to}`));
    if (pairs.size !== edges.length) throw new Error("an arrow is drawn twice");
  });

  await step("a broadcast from tab A appears in the log of tab B", async () => {
    const text = `hello from tab-a ${Math.random().toString(36).slice(2, 8)}`;
    await a.fill("#bc-text", text);
    const sentAt = Date.now();
    await a.click("#bc-send");
    await b.waitForFunction((t) => [...document.querySelectorAll('#log li[data-kind="broadcast"]')]
      .some((li) => li.dataset.sent !== "true" && li.dataset.from === "tab-a" && li.textContent.includes(t)), text, { timeout: STEP_TIMEOUT_MS });
    figures.broadcast_tab_to_tab_s = (Date.now() - sentAt) / 1000;

    // Both graphs animate its spread from tab A, to the receivers in the order they got it.
    const digest = fnv1a(text);
    const selfId = await a.$eval('#members tr[data-name="tab-a"]', (tr) => tr.dataset.memberId);
    const spreadIn = (page) => page.waitForFunction(({ digest, origin }) => {
      const g = document.querySelector(`#graph g.spread[data-digest="${digest}"][data-origin="${origin}"]`);
      return g && g.querySelector(".hop[data-landed=true]") ? g.dataset.order.split(",") : null;
    }, { digest, origin: selfId }, { timeout: STEP_TIMEOUT_MS }).then((h) => h.jsonValue());
    const [orderA, orderB] = await Promise.all([spreadIn(a), spreadIn(b)]);
    const reported = await getJson(`${url}api/cluster`);
    const arrival = new Map();
    for (const n of reported.natives) {
      const got = n.broadcasts.filter((x) => x.from === selfId && x.digest === digest);
      if (got.length !== 1) throw new Error(`${n.name} reports ${got.length} copies of the broadcast`);
      arrival.set(n.name, -got[0].ago_ms);
    }
    const nativeOrder = orderA.filter((name) => arrival.has(name));
    if (nativeOrder.length !== natives.length || orderA.length !== natives.length) throw new Error(`tab A animates to ${orderA.join(",")}; expected the ${natives.length} natives`);
    for (let i = 1; i < nativeOrder.length; i++) {
      // The page and this check read the times at different moments: allow for rounding to the millisecond.
      if (arrival.get(nativeOrder[i]) + 2 < arrival.get(nativeOrder[i - 1])) {
        throw new Error(`tab A animates ${nativeOrder.join(",")}, but ${nativeOrder[i]} got it before ${nativeOrder[i - 1]}`);
      }
    }
    if (!orderB.includes("tab-b") || orderB.filter((n) => arrival.has(n)).length !== natives.length) throw new Error(`tab B animates to ${orderB.join(",")}`);
  });

  await step("a direct message from tab A appears in the log of tab B", async () => {
    const text = `note for tab-b ${Math.random().toString(36).slice(2, 8)}`;
    await until("tab-b among tab A's targets", STEP_TIMEOUT_MS, async () =>
      (await a.$$eval("#req-target option", (os) => os.map((o) => o.textContent))).includes("tab-b"));
    await a.selectOption("#req-target", { label: "tab-b" });
    await a.fill("#req-text", text);
    await a.click("#dm-send");
    await b.waitForFunction((t) => [...document.querySelectorAll('#log li[data-kind="direct"]')]
      .some((li) => li.dataset.sent !== "true" && li.dataset.from === "tab-a" && li.textContent.includes(t)), text, { timeout: STEP_TIMEOUT_MS });
  });

  await step("a group filter (zone~eu) lists exactly the matching members, live", async () => {
    const expected = cluster.natives.filter((n) => (n.metadata.zone ?? "").includes("eu")).map((n) => n.name).concat("tab-b").sort();
    await a.fill("#group-filter", "zone~eu");
    await a.click("#group-apply");
    await until(`group zone~eu = ${expected.join(",")}`, STEP_TIMEOUT_MS, async () => {
      const names = await a.$$eval('#groups .group[data-spec="zone~eu"] li', (lis) => lis.map((li) => li.dataset.name).sort());
      return names.join() === expected.join();
    });
  });

  await step("a request from tab A is answered by native-3", async () => {
    await until("native-3 among the request targets", STEP_TIMEOUT_MS, async () =>
      (await a.$$eval("#req-target option", (os) => os.map((o) => o.textContent))).includes("native-3"));
    await a.selectOption("#req-target", { label: "native-3" });
    await a.fill("#req-text", "ping from e2e");
    await a.click("#req-send");
    await a.waitForSelector('#req-result[data-state="ok"]', { timeout: STEP_TIMEOUT_MS });
    const shown = await a.textContent("#req-result");
    if (!shown.includes("native-3") || !shown.includes("ping from e2e")) throw new Error(`unexpected reply: ${shown}`);
  });

  // A member neither tab relays through, so both tabs stay connected while it is down.
  const victim = natives.find((n) => n !== "native-1" && n !== "native-2") ?? natives[natives.length - 1];
  // The bounds grow with the membership, which now includes both tabs.
  const detection = (await getJson(`${url}api/cluster`)).detection;
  await step(`killing ${victim} in the UI turns it suspect within ${secs(detection.suspect_within_ms)}, then dead within ${secs(detection.dead_within_ms)}`, async () => {
    // Record every state the row shows, with its time, from inside the page.
    await a.evaluate((name) => {
      window.__states = [];
      const record = () => {
        const s = document.querySelector(`#members tr[data-name="${name}"]`)?.dataset.state;
        if (s && window.__states[window.__states.length - 1]?.state !== s) window.__states.push({ state: s, t: Date.now() });
      };
      new MutationObserver(record).observe(document.querySelector("#members tbody"), { subtree: true, attributes: true, childList: true });
      record();
    }, victim);
    const killedAt = Date.now();
    await a.click(`#members tr[data-name="${victim}"] button[data-action="kill"]`);
    await a.waitForFunction((name) => document.querySelector(`#members tr[data-name="${name}"]`)?.dataset.state === "dead",
      victim, { timeout: detection.dead_within_ms + 2_000 });
    const states = await a.evaluate(() => window.__states);
    const suspect = states.find((s) => s.state === "suspect");
    const dead = states.find((s) => s.state === "dead");
    if (!suspect || suspect.t > dead.t) throw new Error(`the row went ${states.map((s) => s.state).join(" -> ")}: no suspect before dead`);
    figures.suspect_after_kill_s = (suspect.t - killedAt) / 1000;
    figures.dead_after_kill_s = (dead.t - killedAt) / 1000;
    if (suspect.t - killedAt > detection.suspect_within_ms) throw new Error(`suspect after ${secs(suspect.t - killedAt)}, bound ${secs(detection.suspect_within_ms)}`);
    if (dead.t - killedAt > detection.dead_within_ms) throw new Error(`dead after ${secs(dead.t - killedAt)}, bound ${secs(detection.dead_within_ms)}`);
    const victimId = cluster.natives.find((n) => n.name === victim).id;
    const fromVictim = await a.$$eval(`#graph line.edge.probe[data-from="${victimId}"]`, (ls) => ls.length);
    if (fromVictim) throw new Error(`${fromVictim} probe arrows from ${victim}, which is not running`);
    const seenByB = (await tableStates(b))[victim];
    if (seenByB !== "dead" && seenByB !== "suspect") throw new Error(`tab B shows ${victim} ${seenByB}`);
  });

  await step(`restarting ${victim} in the UI brings it back alive (same id)`, async () => {
    const idBefore = await a.$eval(`#members tr[data-name="${victim}"]`, (tr) => tr.dataset.memberId);
    const restartedAt = Date.now();
    await a.click(`#members tr[data-name="${victim}"] button[data-action="restart"]`);
    await a.waitForFunction((name) => document.querySelector(`#members tr[data-name="${name}"]`)?.dataset.state === "alive",
      victim, { timeout: detection.dead_within_ms });
    figures.alive_after_restart_s = (Date.now() - restartedAt) / 1000;
    const idAfter = await a.$eval(`#members tr[data-name="${victim}"]`, (tr) => tr.dataset.memberId);
    if (idAfter !== idBefore) throw new Error(`the restarted member has id ${idAfter}, was ${idBefore}`);
    await until(`${victim} alive in tab B`, STEP_TIMEOUT_MS, async () => (await tableStates(b))[victim] === "alive");
  });

  await step("the page fits at every width from 390 to 1,920 px (every 60 px): fonts differ, so no width may be a near miss", async () => {
    const failures = [];
    for (let width = 390; width <= 1920; width += 60) {
      await a.setViewportSize({ width, height: 900 });
      await settled(a);
      for (const p of await layoutProblems(a)) failures.push(`${width} px: ${p}`);
    }
    if (failures.length) throw new Error(`${failures.length} problems, the first ones:\n${failures.slice(0, 12).join("\n")}`);
  });

  for (const width of WIDTHS) {
    const path = SCREENSHOT.replace(/\.png$/, `-${width}.png`);
    await step(`at ${width} px the page fits (no sideways overflow, the whole members table in view, no graph labels overlapping); screenshot ${path}`, async () => {
      await a.setViewportSize({ width, height: 900 });
      await settled(a);
      // The graph and table redraw every second: a problem that shows in one frame counts.
      const problems = await layoutProblems(a);
      if (problems.length) throw new Error(problems.join("\n"));
      await a.screenshot({ path, fullPage: true });
    });
  }
  await a.setViewportSize({ width: 1440, height: 1100 });
  await settled(a);

  await step(`screenshot saved to ${SCREENSHOT}`, async () => {
    // Let the traffic chart gather a few samples after the restart.
    await a.waitForFunction(() => document.querySelectorAll("#traffic polyline").length > 0, null, { timeout: STEP_TIMEOUT_MS });
    await a.waitForTimeout(3_000);
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await a.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  await step("no console errors in either tab", async () => {
    if (consoleErrors.length) throw new Error(consoleErrors.join("\n"));
  });

  await step("the demo stops cleanly on SIGINT (exit 0, no panic)", async () => {
    await browser.close();
    browser = null;
    const exited = new Promise((r) => demo.once("exit", (code, signal) => r({ code, signal })));
    const stopAt = Date.now();
    demo.kill("SIGINT");
    const { code, signal } = await Promise.race([exited, new Promise((r) => setTimeout(() => r({ code: "timeout" }), 15_000))]);
    figures.stop_s = (Date.now() - stopAt) / 1000;
    if (code !== 0) throw new Error(`the demo exited with ${code ?? signal}`);
    if (demoPanics.length) throw new Error(`the demo panicked:\n${demoPanics.join("\n")}`);
  });
}

main()
  .catch(async (e) => {
    if (results.failed === 0) {
      results.failed += 1;
      console.log(`not ok - setup\n  ${String(e.stack || e).replace(/\n/g, "\n  ")}`);
    }
    if (consoleErrors.length) console.log(`console errors:\n  ${consoleErrors.join("\n  ")}`);
    if (browser) {
      for (const [name, page] of pages) {
        const path = resolve(tmpdir(), `web-demo-e2e-failure-${name}.png`);
        await page.screenshot({ path, fullPage: true }).then(() => console.log(`failure screenshot: ${path}`), () => {});
      }
    }
  })
  .finally(async () => {
    if (browser) await browser.close().catch(() => {});
    killDemo("SIGKILL");
    console.log(`e2e figures: ${JSON.stringify(figures)}`);
    console.log(`e2e: ${results.passed} passed, ${results.failed} failed (${secs(Date.now() - t0)})`);
    process.exitCode = results.failed ? 1 : 0;
  });
