// The cluster as a graph: servers on an inner ring, each browser member next to the server that
// relays it. Arrows are real probes: member A → B when A's last probe of B was answered within
// the last PROBE_WINDOW_MS (from the demo server's /api/cluster `probes`, and this tab's own
// round trips), fading with age. A thick dashed line joins a browser to its relay. A broadcast is
// animated from its origin to each member that reported receiving it, in order of arrival.

const NS = "http://www.w3.org/2000/svg";
const W = 520, H = 400, CX = W / 2, CY = H / 2, R_SERVER = 112, R_BROWSER = 165;
const COLORS = { alive: "#16a34a", suspect: "#d97706", dead: "#dc2626", left: "#6b7280" };
/** Probes answered within this window are drawn. */
export const PROBE_WINDOW_MS = 4000;
/** Each hop of a broadcast's animation lasts this long, and the next starts HOP_STAGGER_MS later. */
const HOP_MS = 450, HOP_STAGGER_MS = 220;
/** How long the trace of a broadcast stays in the graph (hops, and the group tests read). */
const SPREAD_KEEP_MS = 15_000;

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

/** The layers: drawn edges and nodes are replaced on every render, animations are not. */
function layers(svg) {
  let base = svg.querySelector("g.base"), anim = svg.querySelector("g.anim");
  if (!base) {
    svg.replaceChildren();
    const defs = el("defs", {}, svg);
    const marker = el("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0 L8,4 L0,8 z", class: "arrowhead" }, marker);
    base = el("g", { class: "base" }, svg);
    anim = el("g", { class: "anim" }, svg);
  }
  return { base, anim };
}

/** Positions every member: servers evenly on a circle, browsers outside their relay. */
function layout(members) {
  const servers = members.filter((m) => !m.relay).sort((a, b) => a.name.localeCompare(b.name));
  const pos = new Map();
  servers.forEach((m, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, servers.length);
    pos.set(m.id, { x: CX + R_SERVER * Math.cos(a), y: CY + R_SERVER * Math.sin(a), a });
  });
  const byRelay = new Map();
  for (const m of members.filter((m) => m.relay)) {
    if (!byRelay.has(m.relay)) byRelay.set(m.relay, []);
    byRelay.get(m.relay).push(m);
  }
  let orphan = 0;
  // Browsers fan out beside their relay, the angle between them shrinking as servers crowd.
  const step = Math.min(0.3, Math.PI / Math.max(2, servers.length) / 2);
  for (const [relay, list] of byRelay) {
    list.sort((a, b) => a.name.localeCompare(b.name));
    const base = pos.get(relay);
    list.forEach((m, i) => {
      // Unknown relay (not in the table yet): park the member on the bottom edge.
      const side = (i % 2 ? -1 : 1) * (Math.floor(i / 2) + 1) * step;
      const a = base ? base.a + side : Math.PI / 2 + (orphan++) * 0.3;
      pos.set(m.id, { x: CX + R_BROWSER * Math.cos(a), y: CY + R_BROWSER * Math.sin(a), a });
    });
  }
  return pos;
}

const radius = (m) => (m.relay ? 10 : 13);

function overlap(a, b) {
  const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  return w > 0 && h > 0 ? w * h : 0;
}

/**
 * Places each label next to its node where it covers no other label and no node, inside the
 * picture: it tries directions around the node's outward one, then further out.
 */
function placeLabels(items) {
  const placed = [];
  const obstacles = items.map(({ p, r }) => ({ x: p.x - r, y: p.y - r, w: 2 * r, h: 2 * r }));
  for (const { text, p, r } of items) {
    let best = null;
    search:
    for (const dist of [r + 5, r + 12, r + 20, r + 30]) {
      for (const turn of [0, 0.45, -0.45, 0.9, -0.9, 1.4, -1.4, 2, -2, Math.PI]) {
        const a = p.a + turn, cos = Math.cos(a), sin = Math.sin(a);
        text.setAttribute("text-anchor", cos > 0.35 ? "start" : cos < -0.35 ? "end" : "middle");
        text.setAttribute("x", (p.x + cos * dist).toFixed(1));
        text.setAttribute("y", (p.y + sin * dist + (sin > 0.35 ? 9 : sin < -0.35 ? 0 : 4)).toFixed(1));
        const bb = text.getBBox();
        const box = { x: bb.x, y: bb.y, w: bb.width, h: bb.height };
        const outside = Math.max(0, -box.x) + Math.max(0, box.x + box.w - W) + Math.max(0, -box.y) + Math.max(0, box.y + box.h - H);
        let score = outside * 100;
        for (const q of placed) score += overlap(box, q) * 1000;
        for (const o of obstacles) score += overlap(box, o);
        if (!best || score < best.score) best = { score, attrs: ["text-anchor", "x", "y"].map((k) => [k, text.getAttribute(k)]), box };
        if (score === 0) break search;
      }
    }
    for (const [k, v] of best.attrs) text.setAttribute(k, v);
    placed.push(best.box);
  }
}

/** A line from `a` to `b` shortened by the radii at both ends (so an arrowhead shows). */
function segment(a, b, ra, rb) {
  const dx = b.x - a.x, dy = b.y - a.y, d = Math.hypot(dx, dy) || 1;
  return { x1: a.x + (dx / d) * ra, y1: a.y + (dy / d) * ra, x2: b.x - (dx / d) * rb, y2: b.y - (dy / d) * rb };
}

let lastPos = new Map();

/**
 * Draws `members` ({id, name, state, relay, isSelf}) into `svg`; `probes` are
 * [{from, to, ago}] (ids, ms), `flashing` holds ids that just sent something to this tab.
 */
export function drawGraph(svg, members, probes, flashing) {
  const { base } = layers(svg);
  base.replaceChildren();
  const pos = layout(members);
  lastPos = pos;
  const byId = new Map(members.map((m) => [m.id, m]));
  const live = (m) => m && (m.state === "alive" || m.state === "suspect");
  const edges = el("g", {}, base);
  for (const m of members.filter((m) => m.relay && live(m))) {
    const a = pos.get(m.id), b = pos.get(m.relay);
    if (a && b) el("line", { class: "edge relay", x1: a.x, y1: a.y, x2: b.x, y2: b.y, "data-from": m.id, "data-to": m.relay }, edges);
  }
  for (const pr of probes) {
    const from = byId.get(pr.from), to = byId.get(pr.to);
    if (!from || !to || pr.ago > PROBE_WINDOW_MS) continue;
    const s = segment(pos.get(pr.from), pos.get(pr.to), radius(from) + 1, radius(to) + 3);
    const line = el("line", { class: "edge probe", ...s, "marker-end": "url(#arrow)", "data-from": pr.from, "data-to": pr.to,
      "data-ago": Math.round(pr.ago), opacity: (1 - 0.75 * (pr.ago / PROBE_WINDOW_MS)).toFixed(2) }, edges);
    el("title", {}, line).textContent = `${from.name} probed ${to.name} ${(pr.ago / 1000).toFixed(1)} s ago`;
  }
  const nodes = el("g", {}, base);
  const labels = el("g", { class: "labels" }, base);
  const items = [];
  for (const m of members) {
    const p = pos.get(m.id);
    const cls = ["node", `state-${m.state}`, m.isSelf ? "self" : "", flashing.has(m.id) ? "flash" : ""].join(" ");
    const g = el("g", { class: cls, "data-member-id": m.id, "data-state": m.state, transform: `translate(${p.x.toFixed(1)},${p.y.toFixed(1)})` }, nodes);
    el("title", {}, g).textContent = `${m.name} (${m.state})`;
    if (m.isSelf) el("circle", { class: "ring", r: radius(m) + 5 }, g);
    el("circle", { class: "body", r: radius(m), fill: COLORS[m.state] || "#9ca3af" }, g);
    const text = el("text", { class: "label", "data-member-id": m.id }, labels);
    text.textContent = m.name;
    items.push({ text, p, r: radius(m) + (m.isSelf ? 5 : 0) });
  }
  placeLabels(items);
  if (members.length === 0) {
    el("text", { x: CX, y: CY, "text-anchor": "middle", fill: "#6b7280" }, base).textContent = "no members yet";
  }
}

/**
 * Animates a broadcast: a dot from `origin` (id) to each of `receivers` ([{id, name, at}], at in
 * ms on this page's clock), in order of arrival. The trace stays (as `g.spread`, with the order in
 * `data-order`) for SPREAD_KEEP_MS; `onHop(id)` is called as each dot lands.
 */
export function animateSpread(svg, spread, onHop) {
  const { anim } = layers(svg);
  const from = lastPos.get(spread.origin);
  const receivers = [...spread.receivers].sort((a, b) => a.at - b.at);
  const g = el("g", { class: "spread", "data-origin": spread.origin, "data-digest": spread.digest,
    "data-order": receivers.map((r) => r.name).join(",") }, anim);
  if (from) el("circle", { class: "spread-origin", cx: from.x, cy: from.y, r: 20 }, g);
  receivers.forEach((r, i) => {
    const to = lastPos.get(r.id);
    const dot = el("circle", { class: "hop", r: 5, cx: 0, cy: 0, "data-to": r.name, "data-order": i, "data-at": Math.round(r.at) }, g);
    if (!from || !to) return;
    const delay = i * HOP_STAGGER_MS;
    const a = dot.animate([
      { transform: `translate(${from.x}px, ${from.y}px)`, opacity: 1 },
      { transform: `translate(${to.x}px, ${to.y}px)`, opacity: 1 },
    ], { duration: HOP_MS, delay, easing: "ease-in-out", fill: "both" });
    a.finished.then(() => { dot.dataset.landed = "true"; dot.style.opacity = "0.35"; onHop?.(r.id); }, () => {});
  });
  setTimeout(() => g.remove(), SPREAD_KEEP_MS);
  return g;
}
