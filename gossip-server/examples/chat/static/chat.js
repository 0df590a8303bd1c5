// The chat page: joins the cluster as an admitted member (no cluster key) through the server
// that served it, and chats by broadcast on the server's topic. Everything a member says is shown
// with textContent, never as HTML.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const encoder = new TextEncoder();

function setStatus(status, text) {
  $("status").dataset.status = status;
  $("status").textContent = text;
}

/** A nickname from `?name=`, or a random one: letters, digits, `-` and `_`, at most 24. */
function nickname() {
  const asked = (params.get("name") || "").replace(/[^A-Za-z0-9_-]/g, "").slice(0, 24);
  return asked || Math.random().toString(36).slice(2, 7);
}

function show(kind, who, text, topic) {
  const log = $("log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  const li = document.createElement("li");
  li.className = kind;
  li.dataset.from = who;
  if (topic) li.dataset.topic = topic;
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who;
  li.append(name);
  if (topic) {
    const t = document.createElement("span");
    t.className = "topic";
    t.textContent = `[${topic}]`;
    li.append(t);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(body);
  log.append(li);
  // The log keeps its last 500 lines.
  while (log.children.length > 500) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function showMembers(node) {
  const list = $("members");
  list.replaceChildren(
    ...node
      .members()
      .filter((m) => m.state === "alive" || m.state === "suspect")
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((m) => {
        const li = document.createElement("li");
        li.dataset.state = m.state;
        li.textContent = m.self ? `${m.name} (you)` : m.name;
        return li;
      }),
  );
}

async function main() {
  const config = await (await fetch("/api/config", { cache: "no-store" })).json();
  const { GossipNode } = await import(config.package);
  const name = config.name_prefix + nickname();
  $("me").textContent = `you are ${name}`;
  let node;
  try {
    node = await GossipNode.create({ name, seeds: config.seeds, config: config.config });
  } catch (e) {
    setStatus("failed", `cannot join: ${e.code || ""} ${e.message}`);
    throw e;
  }
  // For the console (and the end-to-end test): `chat.node.broadcast(...)`.
  window.chat = { node, topic: config.topic };
  setStatus("connected", "connected");
  const nameOf = (id) => node.member(id)?.name ?? id.slice(0, 8);
  node.on("message", (m) => {
    if (m.kind !== "broadcast") return;
    const who = nameOf(m.from);
    const kind = who === config.server ? "server" : "member";
    // The server's grant allows tabs the chat topic only; a full member could use others.
    show(kind, who, m.text(), m.topic === config.topic ? null : m.topic);
  });
  for (const event of ["memberJoined", "memberAlive", "memberSuspect", "memberDead", "memberLeft"]) {
    node.on(event, () => showMembers(node));
  }
  node.on("disconnected", (info) => setStatus("disconnected", `disconnected (${info.code}), rejoining…`));
  node.on("connected", () => setStatus("connected", "connected"));
  showMembers(node);
  window.addEventListener("pagehide", () => { node.leave().catch(() => {}); });

  const input = $("text");
  input.disabled = false;
  $("send").disabled = false;
  input.focus();
  $("say").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    try {
      node.broadcast(config.topic, encoder.encode(text));
    } catch (err) {
      show("error", "not sent", `${err.code || ""} ${err.message}`);
      return;
    }
    // A broadcast does not come back to its sender.
    show("self", name, text);
    input.value = "";
  });
}

main().catch((e) => {
  if ($("status").dataset.status !== "failed") setStatus("failed", `failed: ${e.message}`);
  console.error(e);
});
