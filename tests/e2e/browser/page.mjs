// The browser side of test_browser.py: Google's grpc-web (text and binary
// modes) and Connect-ES's connect-web (Connect and gRPC-Web transports),
// called from a page whose origin is not the server's. esbuild bundles this
// file at test time; the page fetches config.json (the server's URL, the
// descriptor set in base64, which cases to run) from its own origin and
// leaves the results in window.__results, then sets window.__done.
import { GrpcWebClientBase, MethodDescriptor, MethodType } from "grpc-web";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createFileRegistry, fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

function b64bytes(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function headersObject(h) {
  const o = {};
  if (h) h.forEach((v, k) => { o[k] = v; });
  return o;
}

// --- Google's grpc-web, without protoc-gen-grpc-web: MethodDescriptors whose
// serializers are @bufbuild/protobuf's, from the registry.
function grpcWebMethod(registry, service, name, streaming) {
  const m = registry.getService(service).methods.find((x) => x.name === name);
  class Req {}
  class Resp {}
  return new MethodDescriptor(
    "/" + service + "/" + name,
    streaming ? MethodType.SERVER_STREAMING : MethodType.UNARY,
    Req, Resp,
    (msg) => toBinary(m.input, msg),
    (bytes) => fromBinary(m.output, bytes));
}

// One call: resolves {messages, headers, status, error} whatever happens.
function googleCall(client, base, desc, req, md, streaming) {
  return new Promise((resolve) => {
    const out = { messages: [], headers: null, status: null, error: null };
    const url = base + desc.getName();
    let stream;
    const done = () => resolve(out);
    if (streaming) {
      stream = client.serverStreaming(url, req, md, desc);
      stream.on("data", (m) => out.messages.push(m));
      stream.on("error", (e) => { out.error = { code: e.code, message: e.message,
                                                metadata: e.metadata || null }; done(); });
      stream.on("end", done);
    } else {
      stream = client.rpcCall(url, req, md, desc, (err, resp) => {
        if (err) out.error = { code: err.code, message: err.message, metadata: err.metadata || null };
        else out.messages.push(resp);
        // the status event follows the callback in some paths: give it a turn
        setTimeout(done, 0);
      });
    }
    stream.on("metadata", (h) => { out.headers = h; });
    stream.on("status", (s) => { out.status = { code: s.code, details: s.details,
                                                metadata: s.metadata || null }; });
  });
}

async function googleClient(registry, base, format) {
  const client = new GrpcWebClientBase({ format });
  const getFeature = grpcWebMethod(registry, "routeguide.RouteGuide", "GetFeature", false);
  const listFeatures = grpcWebMethod(registry, "routeguide.RouteGuide", "ListFeatures", true);
  const fail = grpcWebMethod(registry, "probe.Probe", "Fail", false);
  const echo = grpcWebMethod(registry, "probe.Probe", "Echo", false);
  const Point = registry.getMessage("routeguide.Point");
  const Rect = registry.getMessage("routeguide.Rectangle");
  const PReq = registry.getMessage("probe.Req");
  const r = {};
  const f = await googleCall(client, base, getFeature,
                             create(Point, { latitude: 407838351, longitude: -746143763 }), {}, false);
  r.unary = { name: f.messages[0] && f.messages[0].name, error: f.error };
  const s = await googleCall(client, base, listFeatures, create(Rect, {
    lo: { latitude: 400000000, longitude: -750000000 },
    hi: { latitude: 420000000, longitude: -730000000 } }), {}, true);
  r.stream = { count: s.messages.length, first: s.messages[0] && s.messages[0].name,
               error: s.error, status: s.status && s.status.code };
  const e = await googleCall(client, base, echo, create(PReq, { name: "gw-" + format }),
                             { "x-from": "browser" }, false);
  r.echo = { text: e.messages[0] && e.messages[0].text, headers: e.headers,
             status: e.status, error: e.error };
  const x = await googleCall(client, base, fail, create(PReq, { name: "" }), {}, false);
  r.fail = { error: x.error, status: x.status };
  // an error after messages: the status in the trailer frame
  const se = await googleCall(client, base, grpcWebMethod(registry, "probe.Probe", "Count", true),
                              create(PReq, { name: "fail", n: 2 }), {}, true);
  r.streamFail = { count: se.messages.length, error: se.error };
  // grpc-web's deadline metadata: a time in ms since the epoch
  const d = await googleCall(client, base, grpcWebMethod(registry, "probe.Probe", "Slow", false),
                             create(PReq, {}), { deadline: String(Date.now() + 300) }, false);
  r.deadline = d.error && { code: d.error.code, message: d.error.message };
  return r;
}

// --- Connect-ES in the browser (fetch).
async function connectClient(registry, base, kind) {
  const transport = kind === "grpcweb"
    ? createGrpcWebTransport({ baseUrl: base })
    : createConnectTransport({ baseUrl: base, useBinaryFormat: kind === "connect" });
  const rg = createClient(registry.getService("routeguide.RouteGuide"), transport);
  const probe = createClient(registry.getService("probe.Probe"), transport);
  const r = {};
  const f = await rg.getFeature({ latitude: 407838351, longitude: -746143763 });
  r.unary = { name: f.name };
  const names = [];
  for await (const m of rg.listFeatures({ lo: { latitude: 400000000, longitude: -750000000 },
                                           hi: { latitude: 420000000, longitude: -730000000 } }))
    names.push(m.name);
  r.stream = { count: names.length, first: names[0] };
  let hdr = null, trl = null;
  const e = await probe.echo({ name: "cw-" + kind }, { headers: { "x-from": "browser" },
                              onHeader: (h) => { hdr = headersObject(h); },
                              onTrailer: (t) => { trl = headersObject(t); } });
  r.echo = { text: e.text, headers: hdr, trailers: trl };
  try {
    await probe.fail({});
    r.fail = "no error";
  } catch (err) {
    const c = ConnectError.from(err);
    r.fail = { code: Code[c.code], message: c.rawMessage,
               details: c.details.map((d) => d.type), metadata: headersObject(c.metadata) };
  }
  try {
    const got = [];
    for await (const m of probe.count({ name: "fail", n: 2 })) got.push(m.i);
    r.streamFail = { count: got.length, error: null };
  } catch (err) {
    const c = ConnectError.from(err);
    r.streamFail = { code: Code[c.code], message: c.rawMessage };
  }
  try {
    await probe.slow({}, { timeoutMs: 300 });
    r.deadline = "no error";
  } catch (err) {
    r.deadline = Code[ConnectError.from(err).code];
  }
  return r;
}

// Connect's GET for a NO_SIDE_EFFECTS method: a simple request (no preflight).
async function connectGet(registry, base) {
  const transport = createConnectTransport({ baseUrl: base, useHttpGet: true });
  const probe = createClient(registry.getService("probe.Probe"), transport);
  let hdr = null;
  const e = await probe.echo({ name: "get" }, { onHeader: (h) => { hdr = headersObject(h); } });
  return { text: e.text, headers: hdr };
}

// --- a page on an origin the server does not list: every call must fail in
// the browser (the preflight is refused), and the page must see it fail.
async function denied(registry, base) {
  const r = {};
  const client = new GrpcWebClientBase({ format: "text" });
  const x = await googleCall(client, base,
                             grpcWebMethod(registry, "routeguide.RouteGuide", "GetFeature", false),
                             create(registry.getMessage("routeguide.Point"), {}), {}, false);
  r.grpcweb = { messages: x.messages.length, error: x.error && { code: x.error.code,
                                                                 message: x.error.message } };
  for (const kind of ["connect", "grpcwebconnect"]) {
    const transport = kind === "connect" ? createConnectTransport({ baseUrl: base })
                                         : createGrpcWebTransport({ baseUrl: base });
    try {
      await createClient(registry.getService("routeguide.RouteGuide"), transport).getFeature({});
      r[kind] = "no error";
    } catch (err) {
      const c = ConnectError.from(err);
      r[kind] = { code: Code[c.code], message: c.rawMessage };
    }
  }
  return r;
}

async function main() {
  const cfg = await (await fetch("config.json")).json();
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, b64bytes(cfg.descriptor)));
  const results = { origin: location.origin };
  if (location.hash === "#denied") {
    results.denied = await denied(registry, cfg.base);
  } else {
    // each client on its own: one that throws leaves the others' results
    const guard = (p) => p.catch((e) => ({ fatal: String(e && e.stack || e) }));
    for (const format of ["text", "binary"])
      results["google-" + format] = await guard(googleClient(registry, cfg.base, format));
    for (const kind of ["connect", "connectjson", "grpcweb"])
      results["connect-web-" + kind] = await guard(connectClient(registry, cfg.base, kind));
    results["connect-web-get"] = await guard(connectGet(registry, cfg.base));
  }
  return results;
}

main().then((r) => { window.__results = r; window.__done = true; },
            (e) => { window.__results = { fatal: String(e && e.stack || e) }; window.__done = true; });
