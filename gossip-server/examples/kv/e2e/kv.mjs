// End-to-end test of the kv example's page in real headless Chromium.
//
// Starts `kv --serve 127.0.0.1:0` (three native nodes, the page on a free port), writes a key on
// a native node through the example's stdin, opens the page, and checks what a user would: the
// tab joins by admission (no cluster key) and lists the native's key; a key set in the page
// reaches the native nodes (the example's /api/keys); a delete in the page hides a native's key
// everywhere; a native's later write shows in the page without a reload. Fails on any console
// error, and stops the example in every case.
//
// Environment: KV_CMD (JSON array: the example binary and any arguments before --serve; default
// `cargo run --quiet --locked -p gossip-server --example kv --`), CHROMIUM (default
// /usr/bin/chromium).

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const KV_CMD = process.env.KV_CMD
  ? JSON.parse(process.env.KV_CMD)
  : ["cargo", "run", "--quiet", "--locked", "-p", "gossip-server", "--example", "kv", "--"];
const START_TIMEOUT_MS = 300_000; // includes building the example when KV_CMD is `cargo run`
const STEP_TIMEOUT_MS = 30_000;
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run"];

let kv = null;
let browser = null;
const lines = []; // the example's answers, in order
const waiters = [];
const consoleErrors = [];

function stop() {
  if (kv && kv.exitCode === null && kv.signalCode === null) {
    try { kv.kill("SIGKILL"); } catch { /* already gone */ }
  }
}
process.on("exit", stop);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => { stop(); process.exit(130); });
}

function nextLine(pred, what, ms = STEP_TIMEOUT_MS) {
  const found = lines.find(pred);
  if (found) {
    lines.splice(lines.indexOf(found), 1);
    return Promise.resolve(found);
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no line from the example: ${what}`)), ms);
    waiters.push({ pred, resolve: (l) => { clearTimeout(timer); resolve(l); } });
  });
}

function start() {
  const [cmd, ...args] = KV_CMD;
  kv = spawn(cmd, [...args, "--serve", "127.0.0.1:0"], { stdio: ["pipe", "pipe", "inherit"] });
  kv.on("exit", (code, signal) => {
    for (const w of waiters.splice(0)) w.resolve(`exited ${code ?? signal}`);
  });
  createInterface({ input: kv.stdout }).on("line", (line) => {
    const w = waiters.find((w) => w.pred(line));
    if (w) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    } else {
      lines.push(line);
    }
  });
}

/** Types a command on the example's stdin and waits for its one-line answer. */
async function command(text, expect) {
  const answer = nextLine(() => true, `answer to ${text}`);
  kv.stdin.write(`${text}\n`);
  const got = await answer;
  if (got !== expect) throw new Error(`${text}: expected ${expect}, got ${got}`);
}

async function until(cond, what, ms = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main() {
  start();
  const banner = await nextLine((l) => l.startsWith("kv page: ") || l.startsWith("exited"), "the page's URL", START_TIMEOUT_MS);
  if (!banner.startsWith("kv page: ")) throw new Error(`the example stopped: ${banner}`);
  const url = banner.slice("kv page: ".length);
  const keysAt = async (node) => (await fetch(`${url}api/keys?node=${node}`)).json();

  // A native write, before the tab exists.
  await command("put 1 greeting hello", "ok");

  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const page = await browser.newPage();
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector('#status[data-state="joined"]', { timeout: STEP_TIMEOUT_MS });
  const status = await page.textContent("#status");
  if (!/tab-kv/.test(status)) throw new Error(`status: ${status}`);

  // The native's key is listed.
  const row = (key) => `#rows tr[data-key="${key}"] td:nth-child(2)`;
  await page.waitForSelector(row("greeting"), { timeout: STEP_TIMEOUT_MS });
  const greeting = await page.textContent(row("greeting"));
  if (greeting !== "hello") throw new Error(`greeting shows ${greeting}`);

  // The tab's write reaches every native node.
  await page.fill("#key", "fruit");
  await page.fill("#value", "apple");
  await page.click('#set button[type="submit"]');
  await page.waitForSelector(row("fruit"), { timeout: STEP_TIMEOUT_MS });
  for (const n of [0, 1, 2]) {
    await until(async () => (await keysAt(n)).fruit === "apple", `node ${n} sees fruit=apple`);
  }
  await command("get 2 fruit", "apple");

  // A delete in the page hides the native's key everywhere.
  await page.fill("#key", "greeting");
  await page.click("#delete");
  await page.waitForSelector(`#rows tr[data-key="greeting"]`, { state: "detached", timeout: STEP_TIMEOUT_MS });
  for (const n of [0, 1, 2]) {
    await until(async () => !("greeting" in (await keysAt(n))), `node ${n} no longer lists greeting`);
  }

  // A later native write shows without a reload (the page watches "kv/").
  await command("put 2 fruit pear", "ok");
  await until(async () => (await page.textContent(row("fruit"))) === "pear", "the page shows fruit=pear");

  if (consoleErrors.length) throw new Error(`console errors: ${consoleErrors.join(" | ")}`);
}

let failed = false;
try {
  await main();
  console.log("kv page e2e: the tab joined by admission, listed, set and deleted keys; natives agree");
} catch (e) {
  failed = true;
  console.error(`kv page e2e failed: ${e.stack || e}`);
}
try { await browser?.close(); } catch { /* closing */ }
if (kv?.stdin.writable) kv.stdin.end("quit\n");
await new Promise((r) => setTimeout(r, 200));
stop();
process.exit(failed ? 1 : 0);
