// The cluster as a graph: servers on an inner ring, each browser member next to the server that
// relays it. A thin line joins two live servers (they probe and gossip with each other); a thick
// dashed line joins a browser to its relay (all of its traffic goes over that WebSocket).

const NS = "http://www.w3.org/2000/svg";
const W = 520, H = 400, CX = W / 2, CY = H / 2, R_SERVER = 115, R_BROWSER = 172;
const COLORS = { alive: "#16a34a", suspect: "#d97706", dead: "#dc2626", left: "#6b7280" };

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
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
  for (const [relay, list] of byRelay) {
    list.sort((a, b) => a.name.localeCompare(b.name));
    const base = pos.get(relay);
    list.forEach((m, i) => {
      // Beside its relay, alternately on either side, so the relay's own label stays clear.
      // Unknown relay (not in the table yet): park the member on the bottom edge.
      const side = (i % 2 ? -1 : 1) * (Math.floor(i / 2) + 1) * 0.3;
      const a = base ? base.a + side : Math.PI / 2 + (orphan++) * 0.3;
      pos.set(m.id, { x: CX + R_BROWSER * Math.cos(a), y: CY + R_BROWSER * Math.sin(a), a });
    });
  }
  return pos;
}

/**
 * Draws `members` ({id, name, state, relay, isSelf}) into `svg`. `flashing` holds ids that just
 * sent something to this tab: they are outlined for a moment.
 */
export function drawGraph(svg, members, flashing) {
  svg.replaceChildren();
  const pos = layout(members);
  const live = (m) => m.state === "alive" || m.state === "suspect";
  const edges = el("g", {}, svg);
  const servers = members.filter((m) => !m.relay && live(m));
  for (let i = 0; i < servers.length; i++) {
    for (let j = i + 1; j < servers.length; j++) {
      const a = pos.get(servers[i].id), b = pos.get(servers[j].id);
      el("line", { class: "edge", x1: a.x, y1: a.y, x2: b.x, y2: b.y }, edges);
    }
  }
  for (const m of members.filter((m) => m.relay && live(m))) {
    const a = pos.get(m.id), b = pos.get(m.relay);
    if (a && b) el("line", { class: "edge relay", x1: a.x, y1: a.y, x2: b.x, y2: b.y, "data-from": m.id, "data-to": m.relay }, edges);
  }
  const nodes = el("g", {}, svg);
  for (const m of members) {
    const p = pos.get(m.id);
    const cls = ["node", `state-${m.state}`, m.isSelf ? "self" : "", flashing.has(m.id) ? "flash" : ""].join(" ");
    const g = el("g", { class: cls, "data-member-id": m.id, "data-state": m.state, transform: `translate(${p.x.toFixed(1)},${p.y.toFixed(1)})` }, nodes);
    const title = el("title", {}, g);
    title.textContent = `${m.name} (${m.state})`;
    if (m.isSelf) el("circle", { class: "ring", r: 19 }, g);
    el("circle", { class: "body", r: m.relay ? 11 : 14, fill: COLORS[m.state] || "#9ca3af" }, g);
    // Labels sit outside the ring, away from the lines that meet at the node.
    const r = (m.relay ? 11 : 14) + 12;
    const label = el("text", { x: (Math.cos(p.a) * r).toFixed(1), y: (Math.sin(p.a) * r + 4).toFixed(1) }, g);
    if (Math.abs(Math.cos(p.a)) > 0.5) label.style.textAnchor = Math.cos(p.a) > 0 ? "start" : "end";
    label.textContent = m.name;
  }
  if (members.length === 0) {
    const t = el("text", { x: CX, y: CY, "text-anchor": "middle", fill: "#6b7280" }, svg);
    t.textContent = "no members yet";
  }
}
