// Calls the HTTP listener's WebSocket calls with the `ws` package (a real
// RFC 6455 client: masked frames, its own handshake, ping, fragments), for
// test_websocket.py: bidi and client streaming in JSON (text frames) and
// protobuf (binary frames, through @bufbuild/protobuf's runtime registry),
// an error status, a refused origin. Prints one JSON line of results.
//
// usage: NODE_PATH=tests/tools/node_modules node ws_client.cjs WS_URL DESCRIPTOR_SET ORIGIN
const { readFileSync } = require("node:fs");
const WebSocket = require("ws");
const { createFileRegistry, fromBinary, toBinary, create } = require("@bufbuild/protobuf");
const { FileDescriptorSetSchema } = require("@bufbuild/protobuf/wkt");

const [base, descPath, origin] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descPath)));
const Msg = registry.getMessage("wst.Msg");

// One call: opens the socket, runs script(ws, next) where next() waits for
// the next message event; resolves with what came back.
function call(path, { protocols, headers, script }) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base + path, protocols, { headers, origin });
    const r = { messages: [], status: null, close: null, protocol: null };
    const waiting = [];
    const queue = [];
    const next = () =>
      new Promise((res) => (queue.length ? res(queue.shift()) : waiting.push(res)));
    ws.on("message", (data, isBinary) => {
      const ev = { data, isBinary };
      if (waiting.length) waiting.shift()(ev);
      else queue.push(ev);
    });
    ws.on("unexpected-response", (req, res) => resolve({ http: res.statusCode }));
    ws.on("error", (e) => r.error = String(e));
    ws.on("close", (code, reason) => {
      r.close = { code, reason: reason.toString() };
      // What was not taken by the script: the responses, then the status.
      for (const ev of queue) r.rest = (r.rest || []).concat([ev]);
      resolve(r);
    });
    ws.on("open", () => {
      r.protocol = ws.protocol;
      script(ws, next, r).catch(reject);
    });
  });
}

// The messages and the status frame among frames: the status is the one
// frame whose type differs from the messages' (binary for JSON, text for proto).
function split(r, json) {
  const frames = r.rest || [];
  r.rest = undefined;
  for (const f of frames) {
    if (f.isBinary === json) r.status = JSON.parse(Buffer.from(f.data).toString("utf8"));
    else r.messages.push(json ? JSON.parse(f.data.toString("utf8")) : fromBinary(Msg, f.data));
  }
  if (!json) r.messages = r.messages.map((m) => ({ text: m.text, n: m.n, protocol: m.protocol, md: m.md }));
  return r;
}

async function main() {
  const out = {};

  // Bidi, JSON: each echo comes back before the next message is sent.
  out.bidiJson = await call("/wst.W/Chat?md.x-user=alice", {
    protocols: ["moonwire.json"],
    headers: { "x-from": "node" },
    script: async (ws, next, r) => {
      r.interleaved = [];
      for (const text of ["a", "b", "c"]) {
        ws.send(JSON.stringify({ text, n: 1 }));
        const ev = await next();
        r.interleaved.push(JSON.parse(ev.data.toString("utf8")).text);
      }
      ws.send(""); // the end of the client's stream
    },
  });
  split(out.bidiJson, true);

  // Bidi, protobuf; one message sent in two fragments, and a ping.
  out.bidiProto = await call("/wst.W/Chat", {
    protocols: ["moonwire.proto"],
    script: async (ws, next, r) => {
      await new Promise((res) => { ws.once("pong", () => { r.pong = true; res(); }); ws.ping("hi"); });
      const bytes = Buffer.from(toBinary(Msg, create(Msg, { text: "fragmented", n: 7 })));
      ws.send(bytes.subarray(0, 3), { binary: true, fin: false });
      ws.send(bytes.subarray(3), { binary: true, fin: true });
      ws.send(Buffer.from(toBinary(Msg, create(Msg, { text: "whole", n: 8 }))));
      ws.send("");
    },
  });
  split(out.bidiProto, false);

  // Client streaming, JSON.
  out.total = await call("/wst.W/Total?encoding=json", {
    script: async (ws) => {
      for (const n of [1, 2, 3]) ws.send(JSON.stringify({ n }));
      ws.send("");
    },
  });
  split(out.total, true);

  // Server streaming, protobuf by the query.
  out.count = await call("/wst.W/Count?encoding=proto", {
    script: async (ws) => ws.send(Buffer.from(toBinary(Msg, create(Msg, { n: 3 })))),
  });
  split(out.count, false);

  // An error with details.
  out.fail = await call("/wst.W/Fail", {
    protocols: ["moonwire.json"],
    script: async (ws) => ws.send("{}"),
  });
  split(out.fail, true);

  // An origin not in http.cors.origins: the upgrade is refused.
  out.evil = await new Promise((resolve) => {
    const ws = new WebSocket(base + "/wst.W/Chat", { origin: "https://evil.example" });
    ws.on("unexpected-response", (req, res) => resolve({ http: res.statusCode }));
    ws.on("open", () => resolve({ opened: true }));
    ws.on("error", () => {});
  });

  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
