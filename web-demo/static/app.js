// The dashboard: this tab joins the cluster as a browser member through the gossip-wasm npm
// package, then shows what its node knows (members, groups, messages) and what the demo server
// reports about the native members (traffic counters, which ones are running).

import { animateSpread, drawGraph, PROBE_WINDOW_MS } from "./graph.js";
import { Traffic } from "./traffic.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const text = new TextEncoder();
const POLL_MS = 1000;
const LOG_MAX = 400;

const app = {
  node: null,
  selfId: null,
  cluster: null, // last GET /api/cluster
  clusterAt: 0, // when it was fetched (ms, this page's clock)
  selfRtt: new Map(), // member id -> { rtt, at }: this tab's own probe round trips, as they change
  spreads: [], // broadcasts seen here, waiting for their receivers to be known: see traceSpreads
  members: [], // normalized rows from node.members()
  groups: [], // { spec, group (the library's live view), el }
  flashing: new Map(), // member id -> until (ms)
  traffic: new Traffic(),
  renderQueued: false,
};

// ---- the gossip-wasm package ------------------------------------------------------------------

async function loadPackage(entry) {
  const mod = await import(entry);
  // wasm-bindgen's `--target web` output exports an init function as the default export.
  if (typeof mod.default === "function") await mod.default();
  return mod;
}

/** A member as the dashboard shows it, from a `MemberInfo` of `node.members()`. */
function normalize(m) {
  return {
    id: m.id,
    short: m.short,
    name: m.name,
    state: m.state,
    addrs: m.addrs,
    relay: m.relay,
    incarnation: m.incarnation,
    metadata: m.metadata,
    rtt: m.rttMs,
    isSelf: m.self,
  };
}

/** A message's data as text (this demo sends UTF-8 bytes). */
const textOf = (message) => message.text();

/** What a `GossipError` (or anything thrown) says. */
const why = (e) => (e && e.code ? `${e.code}: ${e.message}` : String(e?.message ?? e));

// ---- start ------------------------------------------------------------------------------------

async function main() {
  wireControls();
  const cluster = await fetchCluster();
  showDetection(cluster.detection);
  const mod = await loadPackage(cluster.package.entry);
  // Tabs are admitted members: the natives' hook admits names with the demo's prefix.
  const name = params.get("name") || `${cluster.name_prefix}${Math.random().toString(36).slice(2, 6)}`;
  $("self-name").textContent = name;
  const node = await mod.GossipNode.create({
    name,
    seeds: orderSeeds(cluster),
    config: cluster.config,
    metadata: { role: "browser", zone: params.get("zone") || "eu-browser" },
  });
  app.node = node;
  app.selfId = node.id;
  $("self-id").textContent = short(app.selfId);
  $("self-id").title = app.selfId;
  setConn("connected", "alive");
  subscribe(node);
  log("member", `this tab joined as ${name} through ${node.serverUrl}`);
  window.addEventListener("pagehide", () => { node.leave().catch(() => {}); });
  refreshMembers();
  defineGroup($("group-filter").value);
  setInterval(poll, POLL_MS);
  setInterval(refreshMembers, POLL_MS);
}

/** The seeds, the one named by `?seed=native-N` first (so a tab can pick its relay). */
function orderSeeds(cluster) {
  const running = cluster.natives.filter((n) => n.running && n.ws);
  const wanted = params.get("seed");
  let first = running.findIndex((n) => n.name === wanted);
  if (first < 0) first = Math.floor(Math.random() * running.length);
  return running.slice(first).concat(running.slice(0, first)).map((n) => n.ws);
}

function subscribe(node) {
  const who = (m) => m.name ?? nameOf(m.id) ?? m.short;
  const member = (what) => (m) => { log("member", `${who(m)} ${what}`); refreshMembers(); };
  node.on("memberJoined", member("joined"));
  node.on("memberAlive", member("is alive"));
  node.on("memberSuspect", member("is suspect"));
  node.on("memberDead", member("is dead"));
  node.on("memberLeft", member("left"));
  node.on("metadata", (m) => { log("member", `${who(m)} metadata: ${formatMeta(m.metadata)}`); refreshMembers(); });
  node.on("message", (msg) => {
    const from = nameOf(msg.from) ?? short(msg.from);
    flash(msg.from);
    if (msg.kind === "broadcast") noteBroadcast(msg.from, msg.data, Date.now());
    const to = msg.kind === "broadcast" ? "all" : "this tab";
    log(msg.kind, `${from} → ${to} [${msg.topic}] ${textOf(msg)}`, { from });
  });
  // Other tabs may ask this one, as they ask the native members: answer the same way.
  node.on("request", (req) => {
    const from = nameOf(req.from) ?? short(req.from);
    log("request", `${from} asks [${req.topic}] ${textOf(req)}`, { from });
    try {
      req.respond(text.encode(JSON.stringify({ name: node.name, time_unix_ms: Date.now(), topic: req.topic, echo: textOf(req) })));
    } catch (e) {
      log("error", `cannot answer ${from}: ${why(e)}`);
    }
  });
  node.on("connected", (info) => {
    setConn("connected", "alive");
    log("system", `connected to ${nameOf(info.server) ?? short(info.server)} (${info.url})`);
    refreshMembers();
  });
  node.on("disconnected", (info) => {
    setConn("reconnecting", "suspect");
    log("system", `disconnected (${info.code}: ${info.reason}); trying the next seed`);
  });
}

function formatMeta(metadata) {
  return metadata ? Object.entries(metadata).map(([k, v]) => `${k}=${v}`).join(" ") : "";
}

// ---- polling and rendering --------------------------------------------------------------------

async function fetchCluster() {
  const r = await fetch("/api/cluster", { cache: "no-store" });
  if (!r.ok) throw new Error(`GET /api/cluster: ${r.status}`);
  const cluster = await r.json();
  app.cluster = cluster;
  app.clusterAt = Date.now();
  return cluster;
}

async function poll() {
  let cluster;
  try {
    cluster = await fetchCluster();
  } catch (e) {
    setConn("demo server unreachable", "dead");
    return;
  }
  showDetection(cluster.detection);
  const now = Date.now();
  for (const n of cluster.natives) {
    if (n.running && n.status) app.traffic.sample(n.name, now, n.status.counters);
    else app.traffic.gap(n.name, now);
  }
  if (app.node) {
    const s = app.node.stats();
    app.traffic.sample(app.node.name, now, { packets_in: s.packetsIn, packets_out: s.packetsOut, bytes_in: s.bytesIn, bytes_out: s.bytesOut });
  }
  traceSpreads();
  scheduleRender();
}

// ---- who probes whom, and how a broadcast spread ---------------------------------------------

/** Probes answered lately, [{from, to, ago}]: the natives' from the demo server, this tab's own. */
function probes() {
  const out = [];
  const now = Date.now();
  const age = now - app.clusterAt;
  for (const n of app.cluster?.natives ?? []) {
    if (!n.running) continue;
    for (const p of n.probes ?? []) out.push({ from: n.id, to: p.to, ago: p.ago_ms + age });
  }
  for (const [to, p] of app.selfRtt) if (p.at != null) out.push({ from: app.selfId, to, ago: now - p.at });
  return out.filter((p) => p.ago <= PROBE_WINDOW_MS);
}

/** A change in this tab's round trip to a member is a probe of it answered (see observed.rs). */
function trackSelfProbes(members) {
  const now = Date.now();
  for (const m of members) {
    if (m.isSelf || m.rtt == null) continue;
    const prev = app.selfRtt.get(m.id);
    if (!prev) app.selfRtt.set(m.id, { rtt: m.rtt, at: null });
    else if (prev.rtt !== m.rtt) app.selfRtt.set(m.id, { rtt: m.rtt, at: now });
  }
}

/** FNV-1a (32 bits) of `bytes`, as 8 hex digits: the demo server's digest of a broadcast. */
function digest(bytes) {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** Remembers a broadcast sent (`selfAt` null) or received here, to animate once traced. */
function noteBroadcast(origin, data, selfAt) {
  app.spreads.push({ origin, digest: digest(data), noticed: Date.now(), selfAt });
  // Most members have it within a few gossip rounds: ask the server again soon.
  setTimeout(poll, 400);
}

/**
 * Animates each broadcast to the members that received it: every native that reports it (with
 * its arrival time, from the demo server), and this tab. It waits until every running native
 * reports it, or SPREAD_WAIT_MS at most (a native may have missed it).
 */
const SPREAD_WAIT_MS = 3000;
function traceSpreads() {
  const now = Date.now();
  const natives = (app.cluster?.natives ?? []).filter((n) => n.running);
  const waiting = [];
  for (const s of app.spreads) {
    const receivers = [];
    for (const n of natives) {
      // The same text may have been sent before: take the copy nearest to when it was noticed here.
      const copies = (n.broadcasts ?? []).filter((b) => b.from === s.origin && b.digest === s.digest)
        .map((b) => app.clusterAt - b.ago_ms);
      if (copies.length) receivers.push({ id: n.id, name: n.name, at: copies.sort((a, b) => Math.abs(a - s.noticed) - Math.abs(b - s.noticed))[0] });
    }
    const expected = natives.filter((n) => n.id !== s.origin).length;
    if (receivers.length < expected && now - s.noticed < SPREAD_WAIT_MS) {
      waiting.push(s);
      continue;
    }
    if (s.selfAt != null) receivers.push({ id: app.selfId, name: app.node.name, at: s.selfAt });
    const g = animateSpread($("graph"), { origin: s.origin, digest: s.digest, receivers }, (id) => flash(id));
    log("spread", `${nameOf(s.origin) ?? short(s.origin)}'s broadcast reached ${receivers.length} member${receivers.length === 1 ? "" : "s"} known here: ${g.dataset.order || "none"}`);
  }
  app.spreads = waiting;
}

function refreshMembers() {
  if (!app.node) return;
  app.members = Array.from(app.node.members(), normalize);
  trackSelfProbes(app.members);
  scheduleRender();
}

function scheduleRender() {
  if (app.renderQueued) return;
  app.renderQueued = true;
  requestAnimationFrame(() => { app.renderQueued = false; render(); });
}

/** One row per name: a restarted member replaces its older, dead or left, self. */
function rows() {
  const rank = { alive: 3, suspect: 2, dead: 1, left: 0 };
  const byName = new Map();
  for (const m of app.members) {
    const prev = byName.get(m.name);
    if (!prev || rank[m.state] > rank[prev.state] || (rank[m.state] === rank[prev.state] && m.incarnation > prev.incarnation)) byName.set(m.name, m);
  }
  const natives = new Map((app.cluster?.natives ?? []).map((n) => [n.name, n]));
  const out = [...byName.values()].map((m) => ({ ...m, native: natives.get(m.name) ?? null }));
  // Native members this tab does not know (yet, or any more): shown from the demo server's view.
  for (const n of natives.values()) {
    if (!byName.has(n.name)) {
      out.push({ id: n.status?.id ?? null, short: n.status?.short ?? "", name: n.name, state: n.running ? "unknown" : "stopped",
        addrs: n.status?.addrs ?? [], relay: null, incarnation: n.status?.incarnation ?? 0, metadata: n.metadata ?? {}, rtt: null, native: n, isSelf: false });
    }
  }
  return out.sort((a, b) => (a.isSelf ? -1 : b.isSelf ? 1 : 0) || (a.relay ? 1 : 0) - (b.relay ? 1 : 0) || a.name.localeCompare(b.name));
}

function render() {
  const list = rows();
  renderTable(list);
  const now = Date.now();
  for (const [id, until] of app.flashing) if (until < now) app.flashing.delete(id);
  drawGraph($("graph"), list.filter((m) => m.id && ["alive", "suspect", "dead", "left"].includes(m.state)), probes(), new Set(app.flashing.keys()));
  app.traffic.draw($("traffic"), $("traffic-legend"), $("traffic-metric").value, now);
  renderGroups();
  renderTargets(list);
  const alive = list.filter((m) => m.state === "alive").length;
  $("member-count").textContent = `${alive} alive of ${list.length}`;
  if (app.node) {
    const server = app.node.server;
    $("self-relay").textContent = server ? nameOf(server) ?? short(server) : "…";
  }
}

const tableRows = new Map(); // name -> <tr>

function renderTable(list) {
  const tbody = $("members").tBodies[0];
  const seen = new Set();
  list.forEach((m, i) => {
    seen.add(m.name);
    let tr = tableRows.get(m.name);
    if (!tr) {
      tr = document.createElement("tr");
      // data-label: the column's name, shown beside each cell when narrow screens stack them.
      tr.innerHTML = `<td class="id" data-label="id"><code></code></td><td class="name" data-label="name"></td>` +
        `<td class="addr" data-label="address"></td><td class="state" data-label="state"><span class="badge"></span></td>` +
        `<td class="admitted" data-label="admitted by"></td><td class="num inc" data-label="incarnation"></td><td class="meta" data-label="metadata"></td>` +
        `<td class="num rtt" data-label="RTT"></td><td class="actions" data-label=""></td>`;
      tr.dataset.name = m.name;
      if (m.native) {
        const kill = button("kill", "danger", () => control(m.name, "kill"));
        const restart = button("restart", "", () => control(m.name, "restart"));
        tr.querySelector(".actions").append(kill, " ", restart);
      }
      tableRows.set(m.name, tr);
    }
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] ?? null);
    tr.className = m.isSelf ? "self" : "";
    tr.dataset.memberId = m.id ?? "";
    tr.dataset.state = m.state;
    tr.dataset.native = m.native ? "true" : "false";
    setText(tr.querySelector(".id code"), m.short || "—");
    tr.querySelector(".id code").title = m.id ?? "";
    setHtml(tr.querySelector(".name"), esc(m.name) + (m.isSelf ? `<span class="you">this tab</span>` : ""));
    setHtml(tr.querySelector(".addr"), m.addrs.map((a) => `<code>${esc(prettyAddr(a))}</code>`).join("") || "—");
    const badge = tr.querySelector(".badge");
    badge.className = `badge state-${m.state}`;
    badge.dataset.state = m.state;
    setText(badge, m.state);
    const adm = admission(m);
    const admCell = tr.querySelector(".admitted");
    tr.dataset.admittedBy = adm?.by ?? "";
    setText(admCell, adm ? nameOf(adm.by) ?? short(adm.by) : m.native ? "full member" : "—");
    admCell.title = adm
      ? `admitted member (no cluster key), admitted by ${adm.by}` + (adm.expires ? ` until ${new Date(adm.expires).toLocaleTimeString()}` : " (revoked)")
      : m.native ? "holds the cluster key" : "";
    const inc = tr.querySelector(".inc");
    setText(inc, formatIncarnation(m.incarnation));
    inc.title = `incarnation ${m.incarnation}`;
    inc.dataset.value = String(m.incarnation);
    setHtml(tr.querySelector(".meta"), Object.entries(m.metadata).sort().map(([k, v]) => `<span class="chip" data-key="${esc(k)}">${esc(k)}=${esc(v)}</span>`).join(""));
    setText(tr.querySelector(".rtt"), m.rtt == null ? "—" : `${m.rtt.toFixed(m.rtt < 10 ? 1 : 0)} ms`);
    if (m.native) {
      tr.querySelector('[data-action="kill"]').disabled = !m.native.running;
      tr.querySelector('[data-action="restart"]').disabled = m.native.running;
    }
  });
  for (const [name, tr] of tableRows) {
    if (!seen.has(name)) { tr.remove(); tableRows.delete(name); }
  }
}

/**
 * A member's incarnation starts at its start time in Unix milliseconds (a restart outranks what
 * it said before) and grows by one per refuted suspicion: shown as that start's age.
 */
function formatIncarnation(inc) {
  if (!(inc > 1e12 && inc < 1e14)) return String(inc);
  const s = Math.max(0, (Date.now() - inc) / 1000);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function prettyAddr(a) {
  if (a.startsWith("relay://")) return `relay via ${nameOf(a.slice(8)) ?? short(a.slice(8))}`;
  return a;
}

function renderTargets(list) {
  const sel = $("req-target");
  const targets = list.filter((m) => !m.isSelf && m.id && m.state === "alive");
  const key = targets.map((m) => m.id).join();
  if (sel.dataset.key === key) return;
  const keep = sel.value;
  sel.replaceChildren(...targets.map((m) => new Option(m.name, m.id)));
  if (targets.some((m) => m.id === keep)) sel.value = keep;
  sel.dataset.key = key;
}

// ---- groups -----------------------------------------------------------------------------------

/** Defines a group with the library (`node.group`) and mirrors it from its events. */
function defineGroup(spec) {
  const err = $("group-error");
  spec = spec.trim();
  if (!app.node || app.groups.some((g) => g.spec === spec)) return;
  let group;
  try {
    group = app.node.group(spec);
  } catch (e) {
    err.textContent = why(e);
    err.hidden = false;
    return;
  }
  err.hidden = true;
  const g = { spec, group, el: null, fresh: new Set() };
  app.groups.push(g);
  const changed = (what) => (m) => {
    const name = m.name ?? nameOf(m.id) ?? m.short;
    if (what === "+") g.fresh.add(name);
    log("group", `[${spec}] ${what} ${name}`);
    scheduleRender();
  };
  group.on("added", changed("+"));
  group.on("removed", changed("−"));
  group.on("updated", () => scheduleRender());
  scheduleRender();
}

function renderGroups() {
  const box = $("groups");
  for (const g of app.groups) {
    if (!g.el) {
      g.el = document.createElement("div");
      g.el.className = "group";
      g.el.dataset.spec = g.spec;
      g.el.innerHTML = `<header><code></code><span class="hint count"></span><button type="button" class="small">remove</button></header><ul></ul>`;
      g.el.querySelector("code").textContent = g.spec;
      g.el.querySelector("button").addEventListener("click", () => {
        g.group.remove();
        app.groups = app.groups.filter((x) => x !== g);
        g.el.remove();
      });
      box.appendChild(g.el);
    }
    const names = Array.from(g.group.members(), (m) => m.name).sort();
    const ul = g.el.querySelector("ul");
    const key = names.join();
    if (ul.dataset.key !== key) {
      ul.replaceChildren(...names.map((n) => {
        const li = document.createElement("li");
        li.textContent = n;
        li.dataset.name = n;
        if (g.fresh.has(n)) li.className = "enter";
        return li;
      }));
      ul.dataset.key = key;
      g.fresh.clear();
    }
    setText(g.el.querySelector(".count"), `${names.length} member${names.length === 1 ? "" : "s"}`);
  }
}

// ---- controls ---------------------------------------------------------------------------------

function wireControls() {
  $("group-form").addEventListener("submit", (e) => { e.preventDefault(); defineGroup($("group-filter").value); });
  $("meta-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const k = $("meta-key").value.trim(), v = $("meta-value").value;
    if (!app.node || !k) return;
    try {
      app.node.setMetadata(k, v);
      log("system", `this tab's metadata: ${k}=${v}`);
      refreshMembers();
    } catch (err) {
      log("error", `setMetadata failed: ${why(err)}`);
    }
  });
  $("bc-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!app.node) return;
    const topic = $("bc-topic").value, body = $("bc-text").value;
    try {
      // Bytes, so every member (native ones included) reads plain UTF-8.
      app.node.broadcast(topic, text.encode(body));
      log("broadcast", `this tab → all [${topic}] ${body}`, { from: app.node.name, sent: "true" });
      noteBroadcast(app.selfId, text.encode(body), null);
    } catch (err) {
      log("error", `broadcast failed: ${why(err)}`);
    }
  });
  $("req-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = $("req-target").value;
    const out = $("req-result");
    if (!app.node || !id) return;
    const target = nameOf(id) ?? short(id);
    out.dataset.state = "pending";
    out.textContent = `asking ${target}…`;
    const started = performance.now();
    try {
      const reply = await app.node.request(id, text.encode($("req-text").value), { topic: "time", timeoutMs: 3000 });
      const ms = performance.now() - started;
      const shown = describeReply(textOf(reply));
      out.dataset.state = "ok";
      out.textContent = `${target} replied in ${ms.toFixed(1)} ms: ${shown}`;
      log("response", `${target} → this tab: ${shown}`, { from: target });
    } catch (err) {
      out.dataset.state = "error";
      out.textContent = `${target}: ${why(err)}`;
      log("error", `request to ${target} failed: ${why(err)}`);
    }
  });
  $("dm-send").addEventListener("click", () => {
    const id = $("req-target").value;
    if (!app.node || !id) return;
    const target = nameOf(id) ?? short(id);
    const body = $("req-text").value;
    try {
      app.node.send(id, text.encode(body), { topic: "note" });
      log("direct", `this tab → ${target} [note] ${body}`, { from: app.node.name, sent: "true" });
    } catch (err) {
      log("error", `message to ${target} failed: ${why(err)}`);
    }
  });
  $("log-clear").addEventListener("click", () => $("log").replaceChildren());
  $("traffic-metric").addEventListener("change", scheduleRender);
}

/** Members of this demo answer with JSON {name, time_unix_ms, topic, echo}; anything else is shown as text. */
function describeReply(s) {
  try {
    const r = JSON.parse(s);
    if (r && typeof r.name === "string" && typeof r.time_unix_ms === "number") {
      return `${r.name} says it is ${new Date(r.time_unix_ms).toISOString().slice(11, 23)} UTC; you said "${r.echo}"`;
    }
  } catch { /* not JSON */ }
  return s;
}

async function control(name, action) {
  log("system", `${action} ${name}…`);
  try {
    const r = await fetch(`/api/nodes/${encodeURIComponent(name)}/${action}`, { method: "POST" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ?? r.statusText);
    log("system", `${name}: ${action === "kill" ? "killed (no leave: the others must detect it)" : "restarted, rejoining"}`);
    await poll();
  } catch (err) {
    log("error", `${action} ${name}: ${err.message ?? err}`);
  }
}

// ---- helpers ----------------------------------------------------------------------------------

function log(kind, message, data = {}) {
  const li = document.createElement("li");
  li.dataset.kind = kind;
  for (const [k, v] of Object.entries(data)) li.dataset[k] = v;
  const t = document.createElement("time");
  t.textContent = new Date().toISOString().slice(11, 23);
  const k = document.createElement("span");
  k.className = "kind";
  k.textContent = kind;
  const m = document.createElement("span");
  m.className = "msg";
  m.textContent = message;
  li.append(t, k, m);
  const ol = $("log");
  ol.prepend(li);
  while (ol.children.length > LOG_MAX) ol.lastChild.remove();
}

function flash(id) {
  if (id == null) return;
  app.flashing.set(id, Date.now() + 800);
  scheduleRender();
  setTimeout(scheduleRender, 900);
}

/**
 * Who admitted `m` and until when, as the native members report it (tabs do not decode
 * admissions; the natives check them): `{ by, expires }`, or null for a full member (or one
 * whose admission no native reported yet).
 */
function admission(m) {
  if (!m.id) return null;
  for (const n of app.cluster?.natives ?? []) {
    const seen = n.status?.members?.find((x) => x.id === m.id && x.admitted_by);
    if (seen) return { by: seen.admitted_by, expires: seen.admission_expires_ms };
  }
  return null;
}

function nameOf(id) {
  if (id == null) return null;
  const m = app.members.find((x) => x.id === id);
  if (m?.name) return m.name;
  const n = app.cluster?.natives.find((x) => x.status?.id === id);
  return n?.name ?? null;
}

const short = (id) => (id == null ? "?" : String(id).slice(0, 10));
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function setText(el, s) { if (el.textContent !== s) el.textContent = s; }
function setHtml(el, s) { if (el.innerHTML !== s) el.innerHTML = s; }
function button(action, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `small ${cls}`;
  b.dataset.action = action;
  b.textContent = action;
  b.addEventListener("click", onClick);
  return b;
}
function setConn(label, state) {
  const c = $("conn-status");
  c.textContent = label;
  c.className = `badge state-${state}`;
  c.dataset.status = label;
}
function showDetection(d) {
  setText($("detection"), `Native members probe every ${d.probe_interval_ms} ms (timeout ${d.probe_timeout_ms} ms); ` +
    `a member that stops answering is suspect within about ${(d.suspect_within_ms / 1000).toFixed(1)} s and dead ` +
    `${(d.suspicion_min_ms / 1000).toFixed(1)}–${(d.suspicion_max_ms / 1000).toFixed(1)} s later (at most ${(d.dead_within_ms / 1000).toFixed(1)} s in all).`);
}

main().catch((e) => {
  setConn("failed", "dead");
  log("error", `could not join: ${e.message ?? e}`);
  console.error("dashboard failed to start", e);
});
