#!/usr/bin/env bash
# Instructions per unary call, where they go: Moonwire (one worker) under
# valgrind's callgrind while h2load sends bench.Echo/Unary calls. Instruction
# counts move by a few percent between runs (how many calls share a read or
# a write depends on timing), far less than wall-clock rates here.
#
# usage: tests/bench/profile.sh BUILD_DIR [PAYLOAD_BYTES] [CALLS] [INTERCEPT]
#   PAYLOAD_BYTES  16 (default) or any size; CALLS  20000 (default)
#   INTERCEPT  none (default); lua: one trivial global interceptor written
#              in Lua (function(req, ctx, next) return next(req, ctx) end);
#              access_log: the built-in, every line written (to a file);
#              trace1 / trace0: tracing at sample 1.0 / 0.0, spans exported
#              to a small OTLP receiver on loopback
#              idem_replay: the idempotency interceptor on bench.Echo/Unary,
#              every call with the same idempotency-key: the first runs, the
#              rest are replays
#              idem_first: the same, every call a first one (the key is made
#              unique per call by a store wrapper, written in Lua, around
#              the process-wide store: a claim, a run and a stored reply)
#              idem_nokey: the interceptor configured, calls without a key
#              client: the profiled server is a gateway whose Unary handler
#              makes one outbound call (mw.client) to the Lua echo, which
#              runs beside it outside valgrind
#   ADMIN=1 in the environment turns the admin listener on (metrics counted),
#   to measure what the metrics cost per call.
#   CTX=0 in the environment serves the same echo with a Unary handler that
#   declares no ctx parameter (function(req)), to measure what making ctx
#   costs a call.
#   MODE=server-stream|client-stream|bidi|bidi-duplex in the environment
#   profiles a streaming method instead (load from mwload, one connection,
#   STREAMS streams, default 10; CALLS is then the seconds of load, default
#   4): prints instructions per streamed message (bidi: per round trip).
#   WRITE_BATCH=K passes --write-batch K to mwload (client-stream and
#   bidi-duplex: the client buffers K messages per write).
#   PROFILE_YAML='...' in the environment adds its lines to Moonwire's
#   config (e.g. 'keepalive: {max_connection_idle_ms: 0,
#   max_connection_age_ms: 0}'), to measure what a setting costs.
#   SERVER=cecho profiles the benchmark's C echo on gRPC core instead (its
#   main thread is the worker), SERVER=cecho-mwt the same with Moonwire's
#   channel arguments (bench-cecho --moonwire-transport): what gRPC core
#   alone costs a call, with core's defaults and with Moonwire's.
# Writes BUILD_DIR/bench/profile/: the callgrind files, and prints the
# worker thread's instructions per call and the runtime's share of them.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [PAYLOAD_BYTES] [CALLS]" >&2; exit 2; }
build=$(cd "$1" && pwd)
payload=${2:-16}
mode=${MODE:-unary}
if [ "$mode" = unary ]; then calls=${3:-20000}; else calls=${3:-4}; fi
intercept=${4:-none}
here=$(cd "$(dirname "$0")" && pwd)
out=$build/bench/profile
mkdir -p "$out"
for tool in valgrind callgrind_annotate callgrind_control h2load; do
  command -v "$tool" >/dev/null || { echo "profile: $tool not found (tests/bench/setup.sh installs it)" >&2; exit 1; }
done

port=$((20000 + RANDOM % 20000))
frame=$out/frame-$payload.bin
/usr/bin/python3 - "$payload" "$frame" <<'PY'
import struct, sys
n, path = int(sys.argv[1]), sys.argv[2]
def varint(v):
    out = b""
    while True:
        b, v = v & 0x7F, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out
body = b"\x0a" + varint(n) + b"x" * n + b"\x12\x05bench" + b"\x18\x01"
open(path, "wb").write(b"\x00" + struct.pack(">I", len(body)) + body)
PY
extra_dirs= extra_yaml= extra_hdr= services=$here/moonwire backend=
case $intercept in
  none) ;;
  lua)
    mkdir -p "$out/intercept"
    echo 'require("moonwire").intercept(function(req, ctx, next) return next(req, ctx) end)' \
      > "$out/intercept/intercept.lua"
    extra_dirs=", $out/intercept" ;;
  access_log) extra_yaml="interceptors: [{access_log: {level: warn}}]" ;;
  trace1|trace0)
    cport=$((port + 1))
    /usr/bin/python3 - "$cport" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
    collector=$!
    sample=1.0; [ "$intercept" = trace0 ] && sample=0.0
    extra_yaml="tracing: {otlp: \"http://127.0.0.1:$cport/v1/traces\", sample: $sample}" ;;
  idem_replay)
    extra_yaml='methods: {/bench.Echo/Unary: {idempotency: {}}}'
    extra_hdr="idempotency-key: profile-key" ;;
  idem_nokey)
    extra_yaml='methods: {/bench.Echo/Unary: {idempotency: {}}}' ;;
  idem_first)
    # Echo.Unary never waits, so a call's claim and its completion run
    # back to back on the worker: the wrapper keeps the key it made.
    mkdir -p "$out/intercept"
    cat > "$out/intercept/intercept.lua" <<'LUA'
local mw = require "moonwire"
local idem = require "moonwire.interceptors.idempotency"
local ps, n, cur = idem.process_store, 0, nil
local unique = {
  claim = function(scope, key, fp) n = n + 1; cur = key .. n; return ps.claim(scope, cur, fp) end,
  complete = function(scope, _, token, reply, ttl) return ps.complete(scope, cur, token, reply, ttl) end,
  release = function(scope, _, token) return ps.release(scope, cur, token) end,
  wait = ps.wait,
}
mw.intercept("/bench.Echo/Unary", mw.interceptors.idempotency{store = unique})
LUA
    extra_dirs=", $out/intercept"
    extra_hdr="idempotency-key: profile-key" ;;
  client)
    bport=$((port + 2))
    mkdir -p "$out/client"
    cat > "$out/client/gateway.lua" <<'LUA'
local mw = require "moonwire"
local Echo = mw.service "bench.Echo"
local back = mw.client(os.getenv("BENCH_BACKEND"))
function Echo.Unary(req, ctx)
  local res, err = back:call("/bench.Echo/Unary", req)
  if not res then mw.fail(err) end
  return res
end
return Echo
LUA
    cat > "$out/backend.yaml" <<YAML
workers: 1
proto_path: [$here/proto]
protos: [bench.proto]
log: {level: warn}
YAML
    "$build/moonwire" serve -c "$out/backend.yaml" --listen "127.0.0.1:$bport" "$here/moonwire" \
      >"$out/backend.log" 2>&1 &
    backend=$!
    services=$out/client
    export BENCH_BACKEND=127.0.0.1:$bport
    extra_yaml="client: {allow: [\"127.0.0.1:$bport\"]}" ;;
  *) echo "profile: INTERCEPT is none, lua, access_log, trace1, trace0, idem_first, idem_replay, idem_nokey or client, not $intercept" >&2; exit 2 ;;
esac
if [ "${CTX:-1}" = 0 ]; then
  mkdir -p "$out/noctx"
  sed 's/^function Echo\.Unary(req, ctx)$/function Echo.Unary(req)/' "$services/echo.lua" \
    > "$out/noctx/echo.lua"
  grep -q '^function Echo\.Unary(req)$' "$out/noctx/echo.lua" ||
    { echo "profile: CTX=0: no Echo.Unary(req, ctx) in $services/echo.lua" >&2; exit 2; }
  services=$out/noctx
fi
cat > "$out/moonwire.yaml" <<YAML
workers: 1
services: [$services$extra_dirs]
proto_path: [$here/proto]
protos: [bench.proto]
log: {level: warn}
$extra_yaml
${PROFILE_YAML:-}
YAML
if [ "${ADMIN:-0}" = 1 ]; then
  echo 'admin: {listen: "127.0.0.1:0"}' >> "$out/moonwire.yaml"
fi

rm -f "$out"/callgrind.out*
case ${SERVER:-moonwire} in
  moonwire) server_cmd=("$build/moonwire" serve -c "$out/moonwire.yaml" --listen "127.0.0.1:$port") ;;
  cecho) server_cmd=("$build/bench/bench-cecho" "$port") ;;
  cecho-mwt) server_cmd=("$build/bench/bench-cecho" "$port" --moonwire-transport) ;;
  *) echo "profile: SERVER is moonwire, cecho or cecho-mwt, not $SERVER" >&2; exit 2 ;;
esac
if [ "${SERVER:-moonwire}" != moonwire ] &&
  { [ "$intercept" != none ] || [ "${ADMIN:-0}" = 1 ] || [ "${CTX:-1}" = 0 ] || [ -n "${PROFILE_YAML:-}" ]; }; then
  echo "profile: INTERCEPT, ADMIN, CTX and PROFILE_YAML configure Moonwire; SERVER=$SERVER takes none" >&2
  exit 2
fi
[ -x "${server_cmd[0]}" ] || { echo "profile: ${server_cmd[0]} is missing (tests/bench/build.sh builds it)" >&2; exit 1; }
valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/callgrind.out" \
  "${server_cmd[@]}" >"$out/server.log" 2>&1 &
vg=$!
trap 'kill -INT $vg 2>/dev/null || true; [ -z "${collector:-}" ] || kill $collector 2>/dev/null || true; [ -z "$backend" ] || kill $backend 2>/dev/null || true' EXIT
for _ in $(seq 150); do
  grep -q "serving\|listening on" "$out/server.log" 2>/dev/null && break
  sleep 0.2
done
load() {
  h2load -n "$1" -c 1 -m 100 -H "content-type: application/grpc" -H "te: trailers" \
    ${extra_hdr:+-H "$extra_hdr"} -d "$frame" "http://127.0.0.1:$port/bench.Echo/Unary"
}
stream_load() { # SECONDS: mwload's JSON line
  "$build/bench/mwload" "$mode" --target "127.0.0.1:$port" --payload "$payload" \
    --streams "${STREAMS:-10}" --duration "$1" --warmup 0 \
    ${WRITE_BATCH:+--write-batch "$WRITE_BATCH"} \
    $([ "$mode" = bidi ] || echo --per-call 2000)
}
if [ "$mode" = unary ]; then
  load 2000 >/dev/null # warm-up, not counted
  callgrind_control -z "$vg" >/dev/null 2>&1
  res=$(load "$calls")
  grep -q "$calls succeeded, 0 failed" <<<"$res" || { echo "profile: h2load failed:" >&2; echo "$res" >&2; exit 1; }
  callgrind_control -d "$vg" >/dev/null 2>&1
else
  [ -x "$build/bench/mwload" ] || { echo "profile: $build/bench/mwload is missing (tests/bench/build.sh builds it)" >&2; exit 1; }
  stream_load 1 >/dev/null || { echo "profile: mwload failed" >&2; exit 1; } # warm-up
  callgrind_control -z "$vg" >/dev/null 2>&1
  res=$(stream_load "$calls") || { echo "profile: mwload failed: $res" >&2; exit 1; }
  callgrind_control -d "$vg" >/dev/null 2>&1
  # From here on "calls" are the messages (bidi: round trips) mwload counted.
  calls=$(/usr/bin/python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r.get("messages", r.get("round_trips", 0)))' "$res")
  [ "$calls" -gt 0 ] || { echo "profile: no messages: $res" >&2; exit 1; }
fi
kill -INT "$vg"
wait "$vg" || true
trap - EXIT
[ -z "${collector:-}" ] || kill "$collector" 2>/dev/null || true
[ -z "$backend" ] || kill "$backend" 2>/dev/null || true

# The worker is the thread that ran the most instructions after the reset.
best= bestn=0
for f in "$out"/callgrind.out.1-*; do
  n=$(awk '/^summary:/ {print $2; exit}' "$f")
  if [ "${n:-0}" -gt "$bestn" ]; then best=$f bestn=$n; fi
done
[ -n "$best" ] || { echo "profile: no profile written" >&2; exit 1; }
if [ "$mode" = unary ]; then
  echo "payload $payload B, $calls calls, interceptors: $intercept, worker thread: $((bestn / calls)) instructions per call"
else
  echo "$mode, payload $payload B, ${STREAMS:-10} streams, $calls messages, interceptors: $intercept, worker thread: $((bestn / calls)) instructions per message"
fi
echo "inclusive instructions per call of the runtime's entry points:"
callgrind_annotate --threshold=100 --inclusive=yes "$best" 2>/dev/null |
  awk -v calls="$calls" '
    /^ *[0-9,]+ \( *[0-9.]+%\)  / {
      n = $1; gsub(",", "", n)
      if (!match($0, /\)  [^ ]+/)) next
      fn = substr($0, RSTART + 3, RLENGTH - 3); sub(/^.*:/, "", fn); sub(/\..*$/, "", fn)
      if (fn ~ /^(mw_call_arrived|mw_lcall_start|mw_codec_decode_push|finish_ok|mw_codec_encode_buf|mw_call_send|mw_call_send_block|lcall_on_done|mw_call_on_batch|mw_lalloc_fn|stream_send|mw_lstream_on_message|mw_co_resume|grpc_call_start_batch|grpc_completion_queue_next|l_client_unary|mw_ccall_start|mw_client_on_batch|l_client_deadline)$/ && !(fn in seen)) {
        seen[fn] = 1; printf "  %-28s %7d\n", fn, n / calls
      }
    }'
echo "files: $best"
