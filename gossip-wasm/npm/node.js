// Node.js entry: Node's fetch cannot load file: URLs, so the module is read from disk.
import { readFile } from "node:fs/promises";
import init from "./web/gossip_wasm.js";
import { GossipNode, gossipError } from "./api.js";

await init({ module_or_path: await readFile(new URL("./web/gossip_wasm_bg.wasm", import.meta.url)) });

// Node.js 20 has no global WebSocket (22 has). Without one, `create` uses the `ws` package if
// it is installed, and otherwise rejects with `NO_WEBSOCKET`, naming the fixes. Looked up at
// each `create`, so a WebSocket the application provides after importing this package is used.
let wsLoad;

function loadWs() {
  wsLoad ??= import("ws").then(
    ({ WebSocket }) => {
      /**
       * `ws` as the WHATWG WebSocket behaves where it differs in what the .wasm relies on:
       * `send` copies the bytes it is given (they are a view of the .wasm's memory, which the
       * next call may overwrite), and a failed connection is reported by `close` alone (an
       * `error` event without a listener would crash the process).
       */
      class NodeWebSocket extends WebSocket {
        constructor(...args) {
          super(...args);
          this.on("error", () => {});
        }

        send(data, ...rest) {
          return super.send(ArrayBuffer.isView(data) ? data.slice() : data, ...rest);
        }
      }
      return NodeWebSocket;
    },
    (e) => {
      wsLoad = undefined;
      throw e;
    },
  );
  return wsLoad;
}

const create = GossipNode.create;

GossipNode.create = async function createNode(options) {
  if (typeof globalThis.WebSocket !== "function") {
    let Ws;
    try {
      Ws = await loadWs();
    } catch (e) {
      throw gossipError(
        "NO_WEBSOCKET",
        "this Node.js has no global WebSocket and the `ws` package could not be loaded: " +
          "install it (`npm install ws`), or run Node.js 22 or later, or run Node.js 20 with " +
          "`--experimental-websocket`, or set `globalThis.WebSocket` before `GossipNode.create`",
        e,
      );
    }
    // The .wasm's glue calls the global constructor by name.
    if (typeof globalThis.WebSocket !== "function") globalThis.WebSocket = Ws;
  }
  return create.call(this, options);
};

export { GossipNode, GossipStream, Group, Message } from "./api.js";
