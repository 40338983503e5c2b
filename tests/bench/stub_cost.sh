#!/usr/bin/env bash
# What stub matching costs per call: instructions the server (one worker,
# under valgrind's callgrind, counted only while the load runs) executes
# per bench.Echo/Unary call from mwload, for
#   lua        a Lua handler returning {text = "ok"} (the baseline)
#   one        one stub answering every call (no matcher)
#   other1000  that stub, plus 1,000 stubs of another method
#   same1000   999 stubs of the same method with `equals` on text (never
#              matching the calls), then the catch-all: bucketed by value
#   scan1000   the same with `matches` (regexes are never bucketed: every
#              one is tried before the catch-all)
# A measurement to run by hand (docs/stubs.md has the figures), not a test.
#
# usage: tests/bench/stub_cost.sh BUILD_DIR
set -eu
B=$(cd "${1:?usage: stub_cost.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/mw-stubcost-XXXXXX)
trap 'rm -rf "$W"' EXIT
python3 - "$W" "$SRC/tests/bench/proto/bench.proto" <<'PY'
import os, sys
w, proto = sys.argv[1], open(sys.argv[2]).read()
one = "- service: bench.Echo\n  method: Unary\n  output: {data: {text: ok}}\n"
def stubs(method, matcher, n):
    return "".join("- service: bench.Echo\n  method: %s\n  input: {%s}\n  output: {data: {text: x}}\n"
                   % (method, matcher % i) for i in range(n))
dirs = {
    "lua": {"echo.lua": 'local mw = require "moonwire"\nlocal E = mw.service "bench.Echo"\n'
                        'function E.Unary(req, ctx) return {text = "ok"} end\n'},
    "one": {"bench.stubs.yaml": one},
    "other1000": {"bench.stubs.yaml": one + stubs("ServerStream", "equals: {text: t%d}", 1000)},
    "same1000": {"bench.stubs.yaml": stubs("Unary", "equals: {text: t%d}", 999) + one},
    "scan1000": {"bench.stubs.yaml": stubs("Unary", 'matches: {text: "^t%d$"}', 999) + one},
}
for name, files in dirs.items():
    os.makedirs(os.path.join(w, name))
    files["bench.proto"] = proto
    for f, text in files.items():
        open(os.path.join(w, name, f), "w").write(text)
PY
printf 'workers: 1\n' > "$W/cfg.yaml"
for name in lua one other1000 same1000 scan1000; do
  port=$((54000 + RANDOM % 1000))
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$W/cg.$name" \
    "$B/moonwire" serve -c "$W/cfg.yaml" --listen "127.0.0.1:$port" "$W/$name" >"$W/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 120); do grep -qs "listening on" "$W/$name.log" && break; sleep 0.5; done
  "$B/bench/mwload" unary --target "127.0.0.1:$port" --streams 4 --duration 2 --warmup 0 >/dev/null
  callgrind_control -i on $pid >/dev/null 2>&1
  out=$("$B/bench/mwload" unary --target "127.0.0.1:$port" --streams 4 --duration 4 --warmup 0)
  callgrind_control -i off $pid >/dev/null 2>&1
  callgrind_control -d $pid >/dev/null 2>&1
  kill $pid; wait $pid 2>/dev/null || true
  ins=$(grep -h "^totals:" "$W"/cg.$name* | awk '{s += $2} END {print s}')
  echo "$out" | python3 -c "import json, sys; d = json.load(sys.stdin); print('%-10s %8.0f instructions/call (%d calls)' % ('$name', $ins / d['calls_completed'], d['calls_completed']))"
done
