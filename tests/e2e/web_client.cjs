// Calls the HTTP listener with real Connect-ES clients (@connectrpc/connect-node):
// the Connect transport (binary and JSON) and the gRPC-Web transport, both over HTTP/1.1,
// with the schema from a FileDescriptorSet in @bufbuild/protobuf's runtime
// registry (no code generation). Prints one JSON line of results for
// test_web.py to assert.
//
// usage: NODE_PATH=tests/tools/node_modules node web_client.cjs BASE_URL DESCRIPTOR_SET
// (CommonJS, so that NODE_PATH finds the packages tests/tools/setup.sh installs.)
const { readFileSync } = require("node:fs");
const { createClient, ConnectError, Code } = require("@connectrpc/connect");
const { createConnectTransport, createGrpcWebTransport } = require("@connectrpc/connect-node");
const { createFileRegistry, fromBinary } = require("@bufbuild/protobuf");
const { FileDescriptorSetSchema } = require("@bufbuild/protobuf/wkt");

async function main() {

const [baseUrl, descPath] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descPath)));
const service = registry.getService("web.W");

const transports = {
  connect: createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
  connectjson: createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
  grpcweb: createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
};

const out = {};
for (const [name, transport] of Object.entries(transports)) {
  const client = createClient(service, transport);
  const r = {};
  const echo = await client.echo({ name: name }, { headers: { "x-from": "node" } });
  r.echo = { text: echo.text, protocol: echo.protocol, md: echo.md };
  r.count = [];
  for await (const m of client.count({ n: 3 })) r.count.push(m.i);
  try {
    await client.fail({});
    r.fail = "no error";
  } catch (e) {
    const err = ConnectError.from(e);
    r.fail = { code: Code[err.code], message: err.rawMessage, details: err.details.length };
  }
  try {
    await client.slow({ sleep: 3, key: "node-" + name }, { timeoutMs: 200 });
    r.deadline = "no error";
  } catch (e) {
    r.deadline = Code[ConnectError.from(e).code];
  }
  out[name] = r;
}
console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
