// @grpc/grpc-js peer for the Moonwire benchmark: bench.Echo with native
// handlers, bench.proto loaded at run time by @grpc/proto-loader.
//
// usage: node server.js PORT          (listens on 127.0.0.1:PORT)
//
// Threads: JavaScript and all gRPC work run on Node's one event-loop thread
// (grpc-js is pure JS over node:http2). Node itself keeps V8 platform workers
// (GC/compiler helpers; --v8-pool-size=N bounds them) and libuv's pool
// (UV_THREADPOOL_SIZE, default 4, idle here: no fs/dns work while serving).
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const port = process.argv[2];
if (!port || !/^\d+$/.test(port)) {
  process.stderr.write('usage: node server.js PORT\n');
  process.exit(2);
}

const protoPath = process.env.BENCH_PROTO ||
  path.join(__dirname, '..', '..', 'proto', 'bench.proto');
// longs: Number keeps n a plain number (request.n is small); defaults: true so
// that absent fields read as 0 / empty.
const def = protoLoader.loadSync(protoPath, {
  keepCase: true,
  longs: Number,
  defaults: true,
});
const bench = grpc.loadPackageDefinition(def).bench;

function unary(call, callback) {
  callback(null, call.request);
}

function serverStream(call) {
  const req = call.request;
  const n = Number(req.n);
  let i = 0;
  // Respect flow control: write until the stream buffer is full, then wait.
  function pump() {
    while (i < n) {
      i++;
      if (!call.write(req)) {
        call.once('drain', pump);
        return;
      }
    }
    call.end();
  }
  call.on('error', () => {});
  pump();
}

function clientStream(call, callback) {
  let n = 0;
  let last = Buffer.alloc(0);
  call.on('data', (msg) => {
    n++;
    last = msg.payload;
  });
  call.on('end', () => callback(null, { n, payload: last }));
  call.on('error', () => {});
}

function bidi(call) {
  call.on('data', (msg) => call.write(msg));
  call.on('end', () => call.end());
  call.on('error', () => {});
}

const server = new grpc.Server({
  'grpc.max_receive_message_length': 64 << 20,
});
server.addService(bench.Echo.service, {
  Unary: unary,
  ServerStream: serverStream,
  ClientStream: clientStream,
  Bidi: bidi,
});

const addr = `127.0.0.1:${port}`;
server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    process.stderr.write(`bench-node: bind ${addr}: ${err.message}\n`);
    process.exit(1);
  }
  // grpc-js >= 1.10 serves as soon as bindAsync completes (no start()).
  // write() on a pipe is asynchronous in Node; a sync write makes sure the
  // line is out before anyone waits on it.
  require('fs').writeSync(1, `listening on ${addr}\n`);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => {
    server.forceShutdown();
    process.exit(0);
  }, 1000);
  timer.unref();
  server.tryShutdown(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
