// @connectrpc/connect-node peer for the web protocols' benchmark
// (tests/bench/web_bench.py): examples/helloworld's Greeter.SayHello,
// answering "Hello " + name, as Connect (binary and JSON) and gRPC-Web, over
// h2c and HTTP/1.1 on one port (node:http2 with allowHTTP1), the schema from a
// FileDescriptorSet in @bufbuild/protobuf's run-time registry (no code
// generation), the same way Moonwire loads its .proto files.
//
// usage: NODE_PATH=tests/tools/node_modules \
//          node --v8-pool-size=1 server.cjs PORT DESCRIPTOR_SET
//   DESCRIPTOR_SET: protoc --include_imports --descriptor_set_out=FILE
//                   examples/helloworld/helloworld.proto
// Listens on 127.0.0.1:PORT (0: any free port), prints
// "listening on 127.0.0.1:PORT" once it accepts calls, exits 0 on
// SIGTERM/SIGINT.
//
// (CommonJS, so that NODE_PATH finds the packages tests/tools/setup.sh
// installs, pinned by tests/tools/package-lock.json.)
//
// Threads: all of it runs on Node's one event-loop thread; --v8-pool-size=1
// trims V8's helper pool as for the grpc-js peer (tests/bench/peers/node).
'use strict';

const http = require('node:http');
const http2 = require('node:http2');
const net = require('node:net');
const { readFileSync } = require('node:fs');
const { connectNodeAdapter } = require('@connectrpc/connect-node');
const { createFileRegistry, fromBinary, create } = require('@bufbuild/protobuf');
const { FileDescriptorSetSchema } = require('@bufbuild/protobuf/wkt');

const [port, descPath] = process.argv.slice(2);
if (!port || !/^\d+$/.test(port) || !descPath) {
  process.stderr.write('usage: node server.cjs PORT DESCRIPTOR_SET\n');
  process.exit(2);
}

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descPath)));
const greeter = registry.getService('helloworld.Greeter');
const reply = registry.getMessage('helloworld.HelloReply');
if (!greeter || !reply) {
  process.stderr.write(descPath + ': no helloworld.Greeter / helloworld.HelloReply in it\n');
  process.exit(2);
}

const handler = connectNodeAdapter({
  // gRPC is measured against Moonwire's own gRPC listener, not here: this
  // peer stands for "a server that speaks the web protocols".
  connect: true,
  grpcWeb: true,
  grpc: false,
  routes(router) {
    router.service(greeter, {
      sayHello(req) {
        return create(reply, { message: 'Hello ' + req.name });
      },
    });
  },
});

// One port for both: node:http2's allowHTTP1 falls back by ALPN, so only
// over TLS; in cleartext each connection's first bytes tell (an h2c client
// opens with the "PRI * HTTP/2.0" preface, prior knowledge as h2load and
// Moonwire's clients do), and the socket goes to the server that speaks it.
// That is once per connection, nothing per call.
const h2 = http2.createServer({}, handler);
const h1 = http.createServer(handler);
const server = net.createServer((sock) => {
  sock.once('data', (chunk) => {
    sock.pause();
    sock.unshift(chunk);
    if (chunk.subarray(0, 3).toString('latin1') === 'PRI') {
      // node:http2 takes the bytes already read from the socket's buffer.
      h2.emit('connection', sock);
    } else {
      h1.emit('connection', sock);
      sock.resume();
    }
  });
  sock.on('error', () => {});
});
server.on('error', (e) => {
  process.stderr.write('cannot listen on 127.0.0.1:' + port + ': ' + e.message + '\n');
  process.exit(1);
});
server.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write('listening on 127.0.0.1:' + server.address().port + '\n');
});

function stop() {
  // Open h2 sessions would keep close() waiting: give calls a second.
  server.close(() => process.exit(0));
  h2.close();
  h1.close();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
