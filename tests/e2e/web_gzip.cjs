// Compressed gRPC-Web with a real client: connect-node's gRPC-Web transport
// (HTTP/1.1) sending gzip-compressed requests (grpc-encoding: gzip) and
// accepting gzip answers (grpc-accept-encoding: gzip). Prints one JSON line
// of results for test_web.py to assert (the wire itself it checks through a
// recording proxy).
//
// usage: NODE_PATH=tests/tools/node_modules node web_gzip.cjs BASE_URL DESCRIPTOR_SET
const { readFileSync } = require("node:fs");
const { createClient, ConnectError, Code } = require("@connectrpc/connect");
const { createGrpcWebTransport, compressionGzip } = require("@connectrpc/connect-node");
const { createFileRegistry, fromBinary } = require("@bufbuild/protobuf");
const { FileDescriptorSetSchema } = require("@bufbuild/protobuf/wkt");

async function main() {
  const [baseUrl, descPath] = process.argv.slice(2);
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descPath)));
  const transport = createGrpcWebTransport({
    baseUrl, httpVersion: "1.1",
    sendCompression: compressionGzip, acceptCompression: [compressionGzip],
    compressMinBytes: 100,
  });
  const client = createClient(registry.getService("web.W"), transport);
  const out = {};
  const big = "z".repeat(3000);
  const echo = await client.echo({ name: big });
  out.echo = echo.text.length;
  out.flood = [];
  for await (const m of client.flood({ n: 3, key: "gzip-node" }))
    out.flood.push([m.i, m.text.length]);
  try {
    await client.fail({ name: big });
    out.fail = "no error";
  } catch (e) {
    const err = ConnectError.from(e);
    out.fail = { code: Code[err.code], message: err.rawMessage };
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
