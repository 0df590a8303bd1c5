// End-to-end test of the chat example in real headless Chromium.
//
// Starts the chat server on a free port, opens two tabs (tab-alice, tab-bob) and checks what a
// user would: both join as admitted members and the server announces them; a line typed in
// alice's tab reaches bob's tab and the server; a line typed on the server's stdin reaches both
// tabs; a broadcast on a topic outside the tabs' grant is refused by the server and reaches no
// one (while a line after it does); closing bob's tab shows as "left" in alice's tab and on the
// server, and so does a third tab that goes without a goodbye (as if it crashed), once the
// server's probes of it fail; SIGTERM stops the server cleanly. Fails on any console error or server panic.
//
// Environment: CHROMIUM (default /usr/bin/chromium), CHAT_CMD (JSON array, default: cargo run
// --locked -p gossip-server --example chat --), CHAT_SCREENSHOT (a path: save alice's tab there).

import { spawn } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../../..");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHAT_CMD = process.env.CHAT_CMD
  ? JSON.parse(process.env.CHAT_CMD)
  : ["cargo", "run", "--quiet", "--locked", "-p", "gossip-server", "--example", "chat", "--"];
const START_TIMEOUT_MS = 300_000; // includes building the example when CHAT_CMD is `cargo run`
const STEP_TIMEOUT_MS = 30_000;
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run"];

const t0 = Date.now();
const secs = (ms) => (ms / 1000).toFixed(1) + " s";
let server = null;
let browser = null;
const serverLines = [];
const serverPanics = [];
const consoleErrors = [];
const results = { passed: 0, failed: 0 };

// ---- process lifetime: the server never outlives this script ------------------------------------

function killServer(signal = "SIGKILL") {
  if (server && server.exitCode === null && server.signalCode === null) {
    try { server.kill(signal); } catch { /* already gone */ }
  }
}
process.on("exit", () => killServer("SIGKILL"));
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => { console.error(`e2e: ${sig}, stopping`); killServer("SIGKILL"); process.exit(130); });
}

function startServer() {
  const [cmd, ...args] = CHAT_CMD;
  server = spawn(cmd, [...args, "--port", "0", "--bind", "127.0.0.1"], {
    cwd: root,
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" },
  });
  return new Promise((resolveUrl, reject) => {
    let partial = "";
    const timer = setTimeout(() => reject(new Error(`the server printed no URL within ${secs(START_TIMEOUT_MS)}`)), START_TIMEOUT_MS);
    server.stderr.setEncoding("utf8");
    server.stderr.on("data", (chunk) => {
      process.stderr.write(chunk);
      for (const m of chunk.matchAll(/panicked at [^\n]*/g)) serverPanics.push(m[0]);
    });
    server.stdout.setEncoding("utf8");
    server.stdout.on("data", (chunk) => {
      partial += chunk;
      const lines = partial.split("\n");
      partial = lines.pop();
      for (const line of lines) {
        serverLines.push(line);
        console.log(`server| ${line}`);
        const m = line.match(/^chat: (http:\/\/\S+)/);
        if (m) { clearTimeout(timer); resolveUrl(m[1]); }
      }
    });
    server.on("exit", (code, signal) => { clearTimeout(timer); reject(new Error(`the server exited early (${code ?? signal})`)); });
    server.on("error", (e) => { clearTimeout(timer); reject(e); });
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
    throw e;
  }
}

/** Polls `check` (returns a truthy value when done) every 50 ms until `timeoutMs`. */
async function until(what, check, timeoutMs = STEP_TIMEOUT_MS) {
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
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  return r.json();
}

async function openTab(context, baseUrl, nick) {
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(`${nick}: console.error: ${m.text()}`); });
  page.on("pageerror", (e) => consoleErrors.push(`${nick}: uncaught: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400) consoleErrors.push(`${nick}: ${r.status()} for ${r.url()}`); });
  await page.goto(`${baseUrl}?name=${nick}`);
  await page.waitForSelector('#status[data-status="connected"]', { timeout: STEP_TIMEOUT_MS });
  return page;
}

/** The lines of a tab's log: { from, topic, text }. */
const logOf = (page) => page.$$eval("#log li", (lis) => lis.map((li) => ({
  from: li.dataset.from,
  topic: li.dataset.topic || null,
  text: li.querySelector(".text")?.textContent ?? "",
})));

const hasLine = async (page, from, text) => (await logOf(page)).some((l) => l.from === from && l.text === text && !l.topic);

const membersOf = (page) => page.$$eval("#members li", (lis) => lis.map((li) => li.textContent));

async function type(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

// ---- the scenario -----------------------------------------------------------------------------

async function main() {
  const url = await startServer();
  console.log(`e2e: chat server at ${url} after ${secs(Date.now() - t0)}`);
  const config = await getJson(`${url}api/config`);
  const SERVER = config.server;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  let alice, bob;

  await step("two tabs join as admitted members and the server announces them", async () => {
    alice = await openTab(context, url, "alice");
    bob = await openTab(context, url, "bob");
    await until("the server to announce both tabs", () =>
      serverLines.includes("* tab-alice joined") && serverLines.includes("* tab-bob joined"));
    // The announcements are the server's own lines, so the tabs see them too.
    await until("alice to see the server announce bob", () => hasLine(alice, SERVER, "* tab-bob joined"));
    for (const [page, self] of [[alice, "tab-alice"], [bob, "tab-bob"]]) {
      await until(`${self}'s member list to show everyone`, async () => {
        const names = await membersOf(page);
        return names.includes(`${self} (you)`) && names.includes(SERVER) &&
          names.some((n) => n.startsWith(self === "tab-alice" ? "tab-bob" : "tab-alice"));
      });
    }
  });

  await step("a line typed in alice's tab reaches bob's tab and the server", async () => {
    const sent = Date.now();
    await type(alice, "hello from alice");
    await until("alice's own line in her log", async () => (await logOf(alice)).some((l) => l.from === "tab-alice" && l.text === "hello from alice"));
    await until("the line in bob's tab", () => hasLine(bob, "tab-alice", "hello from alice"));
    await until("the line on the server", () => serverLines.includes("tab-alice: hello from alice"));
    console.log(`e2e: alice -> bob and server in ${Date.now() - sent} ms`);
    if (await alice.inputValue("#text") !== "") throw new Error("the input was not cleared after sending");
  });

  await step("a line typed on the server's stdin reaches both tabs", async () => {
    server.stdin.write("hello from the server\n");
    for (const page of [alice, bob]) {
      await until("the server's line in a tab", () => hasLine(page, SERVER, "hello from the server"));
    }
    if (!serverLines.includes(`${SERVER}: hello from the server`)) throw new Error("the server did not print its own line");
  });

  await step("a tab cannot post on another topic: the grant refuses it at the server", async () => {
    const before = (await getJson(`${url}api/status`)).forbidden;
    // The page offers no way to do this; a tab's user (or a hostile script) can, from the console.
    await alice.evaluate(() => window.chat.node.broadcast("secret", new TextEncoder().encode("psst-secret")));
    await until("the server to count the refused broadcast", async () => (await getJson(`${url}api/status`)).forbidden > before);
    // A line after it still gets through; by then the refused one would have arrived too.
    await type(alice, "after the secret");
    await until("the next line in bob's tab", () => hasLine(bob, "tab-alice", "after the secret"));
    await until("the next line on the server", () => serverLines.includes("tab-alice: after the secret"));
    const leaked = (await logOf(bob)).filter((l) => l.text.includes("psst-secret"));
    if (leaked.length > 0) throw new Error(`bob received the refused broadcast: ${JSON.stringify(leaked)}`);
    if (serverLines.some((l) => l.includes("psst-secret"))) throw new Error("the server printed the refused broadcast");
  });

  await step("closing bob's tab shows as left in alice's tab and on the server", async () => {
    const closed = Date.now();
    await bob.close();
    await until("the server to say bob left", () => serverLines.some((l) => l.startsWith("* tab-bob left")));
    await until("alice to see that bob left", async () => (await logOf(alice)).some((l) => l.from === SERVER && l.text.startsWith("* tab-bob left")));
    await until("bob to leave alice's member list", async () => !(await membersOf(alice)).some((n) => n.startsWith("tab-bob")));
    console.log(`e2e: bob's close seen by alice in ${Date.now() - closed} ms`);
    if (process.env.CHAT_SCREENSHOT) await alice.screenshot({ path: resolve(process.env.CHAT_SCREENSHOT) });
  });

  await step("a tab that goes without a goodbye shows as left once the server's probes fail", async () => {
    const carol = await openTab(context, url, "carol");
    await until("the server to announce carol", () => serverLines.includes("* tab-carol joined"));
    // As if the tab crashed: its goodbye on pagehide does nothing, and its socket just closes.
    await carol.evaluate(() => { window.chat.node.leave = () => Promise.resolve(); });
    const closed = Date.now();
    await carol.close();
    await until("the server to say carol's connection was lost", () => serverLines.includes("* tab-carol left (connection lost)"));
    await until("alice to see that carol left", async () => (await logOf(alice)).some((l) => l.from === SERVER && l.text === "* tab-carol left (connection lost)"));
    await until("carol to leave alice's member list", async () => !(await membersOf(alice)).some((n) => n.startsWith("tab-carol")));
    console.log(`e2e: carol's crash seen by alice in ${Date.now() - closed} ms`);
  });

  await step("no console errors and no server panic", async () => {
    if (consoleErrors.length > 0) throw new Error(consoleErrors.join("\n"));
    if (serverPanics.length > 0) throw new Error(serverPanics.join("\n"));
  });

  await step("SIGTERM stops the server cleanly", async () => {
    await browser.close();
    browser = null;
    if (server.exitCode !== null || server.signalCode !== null) throw new Error("the server had already exited");
    server.removeAllListeners("exit");
    const exit = new Promise((r) => server.once("exit", (code, signal) => r({ code, signal })));
    server.kill("SIGTERM");
    // The server leaves the cluster first (bounded), then exits.
    const { code, signal } = await Promise.race([exit, new Promise((r) => setTimeout(() => r({ code: "no exit within 10 s" }), 10_000))]);
    if (code !== 0) throw new Error(`the server exited with ${code ?? signal}`);
  });
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  if (results.failed === 0) console.log(`not ok - setup\n  ${String(e.stack || e).replace(/\n/g, "\n  ")}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  killServer("SIGKILL");
}
console.log(`e2e: ${results.passed} passed, ${results.failed} failed in ${secs(Date.now() - t0)}`);
process.exit(failed || results.failed > 0 ? 1 : 0);
