// Packets/s and bytes/s per member over the last minute, from the counters in each native
// node's status (packets_in + packets_out, bytes_in + bytes_out), sampled by polling.

const NS = "http://www.w3.org/2000/svg";
const W = 520, H = 200, PAD_L = 46, PAD_R = 8, PAD_T = 10, PAD_B = 20;
const WINDOW_MS = 60_000;
const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#9333ea", "#ea580c", "#0f766e"];

export class Traffic {
  constructor() {
    /** name -> { last: {t, packets, bytes} | null, points: [{t, packets, bytes}] (rates) } */
    this.series = new Map();
    this.colors = new Map();
  }

  color(name) {
    if (!this.colors.has(name)) this.colors.set(name, PALETTE[this.colors.size % PALETTE.length]);
    return this.colors.get(name);
  }

  /** Records the cumulative counters of `name` read at time `t` (ms). */
  sample(name, t, counters) {
    const packets = (counters.packets_in ?? 0) + (counters.packets_out ?? 0);
    const bytes = (counters.bytes_in ?? 0) + (counters.bytes_out ?? 0);
    let s = this.series.get(name);
    if (!s) {
      s = { last: null, points: [] };
      this.series.set(name, s);
      this.color(name);
    }
    // A restarted node starts its counters again from zero: restart the rate there too.
    if (s.last && t > s.last.t && packets >= s.last.packets && bytes >= s.last.bytes) {
      const dt = (t - s.last.t) / 1000;
      s.points.push({ t, packets: (packets - s.last.packets) / dt, bytes: (bytes - s.last.bytes) / dt });
    }
    s.last = { t, packets, bytes };
  }

  /** Marks `name` as not running at `t`: its line drops to zero until it is sampled again. */
  gap(name, t) {
    const s = this.series.get(name);
    if (!s) return;
    if (s.last) s.points.push({ t, packets: 0, bytes: 0 });
    s.last = null;
  }

  prune(now) {
    for (const s of this.series.values()) {
      while (s.points.length && s.points[0].t < now - WINDOW_MS) s.points.shift();
    }
  }

  /** Draws the `metric` ("packets" or "bytes") lines into `svg` and the legend into `legend`. */
  draw(svg, legend, metric, now) {
    this.prune(now);
    let max = 1;
    for (const s of this.series.values()) for (const p of s.points) max = Math.max(max, p[metric]);
    max = niceCeil(max);
    svg.replaceChildren();
    const x = (t) => PAD_L + ((t - (now - WINDOW_MS)) / WINDOW_MS) * (W - PAD_L - PAD_R);
    const y = (v) => H - PAD_B - (v / max) * (H - PAD_T - PAD_B);
    const el = (name, attrs, text) => {
      const e = document.createElementNS(NS, name);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e);
      return e;
    };
    el("line", { class: "axis", x1: PAD_L, y1: H - PAD_B, x2: W - PAD_R, y2: H - PAD_B });
    el("line", { class: "axis", x1: PAD_L, y1: PAD_T, x2: PAD_L, y2: H - PAD_B });
    for (const f of [0, 0.5, 1]) {
      el("text", { x: PAD_L - 4, y: y(max * f) + 3, "text-anchor": "end" }, formatRate(max * f, metric));
    }
    el("text", { x: PAD_L, y: H - 5 }, "-60 s");
    el("text", { x: W - PAD_R, y: H - 5, "text-anchor": "end" }, "now");
    legend.replaceChildren();
    for (const [name, s] of [...this.series].sort((a, b) => a[0].localeCompare(b[0]))) {
      if (s.points.length > 1) {
        const pts = s.points.map((p) => `${x(p.t).toFixed(1)},${y(p[metric]).toFixed(1)}`).join(" ");
        el("polyline", { points: pts, stroke: this.color(name), "data-name": name });
      }
      const latest = s.points.length ? s.points[s.points.length - 1][metric] : 0;
      const item = document.createElement("span");
      item.dataset.name = name;
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = this.color(name);
      item.append(sw, ` ${name} ${s.last ? formatRate(latest, metric) : "(stopped)"}`);
      legend.appendChild(item);
    }
  }
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function formatRate(v, metric) {
  if (metric === "bytes") {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + " MB/s";
    if (v >= 1e3) return (v / 1e3).toFixed(1) + " kB/s";
    return v.toFixed(0) + " B/s";
  }
  return (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + "/s";
}
