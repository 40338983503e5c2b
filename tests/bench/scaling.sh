#!/usr/bin/env bash
# Multi-core scaling: Moonwire with W workers against grpc-go with
# GOMAXPROCS=W, each server pinned to W cores (0..W-1), the load from mwload
# on the cores after them (up to 2W client threads, one connection pair
# each), for unary 16 B calls and 64 B server streaming. Prints one table.
#
# usage: tests/bench/scaling.sh [BUILD_DIR]
#   WORKERS="1 2 4 8"  worker counts; those that leave no core for the
#                      client are skipped (on 2 cores only W=1 runs)
#   SECONDS_PER=5      measured seconds per case (after 1 s of warm-up)
#   RUNS=3             runs per case, the median is printed (the spread too)
#   SERVERS="moonwire go"
# Needs what `make build` makes (BUILD_DIR/moonwire, BUILD_DIR/bench/mwload)
# and, for grpc-go, BUILD_DIR/bench/bench-go (tests/bench/build.sh, as
# `make bench` runs it); without it the grpc-go column says so. Builds
# nothing. With the defaults it takes about 6 minutes on 16 cores.
#
# A figure whose client used 90 % or more of its cores is marked "(client)":
# the load generator was the limit, not the server.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
workers=${WORKERS:-1 2 4 8}
secs=${SECONDS_PER:-5}
runs=${RUNS:-3}
servers=${SERVERS:-moonwire go}
ncpu=$(nproc)
mw=$build/moonwire
load=$build/bench/mwload
gobin=$build/bench/bench-go
py=/usr/bin/python3

for f in "$mw" "$load"; do
  [ -x "$f" ] || { echo "scaling: $f is missing (make build)" >&2; exit 1; }
done
command -v taskset >/dev/null || { echo "scaling: taskset is missing" >&2; exit 1; }

tmp=$(mktemp -d)
srv_pid=
cleanup() {
  if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_server NAME W: starts it pinned to cores 0..W-1; sets srv_pid, port.
start_server() {
  local name=$1 w=$2 cores="0-$(($2 - 1))"
  port=$(free_port)
  case $name in
    moonwire)
      printf 'workers: %d\nproto_path: [%s]\nprotos: [bench.proto]\nlog: {level: warn}\nreload: {watch: false}\n' \
        "$w" "$here/proto" >"$tmp/mw.yaml"
      taskset -c "$cores" "$mw" serve -c "$tmp/mw.yaml" --listen "127.0.0.1:$port" \
        "$here/moonwire" >"$tmp/server.log" 2>&1 &
      ;;
    go)
      GOMAXPROCS=$w taskset -c "$cores" "$gobin" "$port" >"$tmp/server.log" 2>&1 &
      ;;
  esac
  srv_pid=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$tmp/server.log" 2>/dev/null && return 0
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "scaling: $name did not start:" >&2
  cat "$tmp/server.log" >&2
  exit 1
}

stop_server() {
  kill "$srv_pid" 2>/dev/null || true
  wait "$srv_pid" 2>/dev/null || true
  srv_pid=
}

# run_case MODE W CLIENT_THREADS: one mwload run; prints "rate cpu_pct".
run_case() {
  local mode=$1 w=$2 t=$3 cores="$2-$(($2 + $3 - 1))" opts
  case $mode in
    unary) opts=(--payload 16 --streams $((64 * t))) ;;
    server-stream) opts=(--payload 64 --streams $((16 * t)) --per-call 10000) ;;
  esac
  taskset -c "$cores" "$load" "$mode" --target "127.0.0.1:$port" --duration "$secs" \
    --warmup 1 --threads "$t" --channels $((2 * t)) "${opts[@]}" >"$tmp/out.json" ||
    { echo "scaling: mwload $mode failed against $name" >&2; exit 1; }
  $py -c 'import json,sys
r = json.load(open(sys.argv[1]))
print(r.get("calls_per_s", r.get("messages_per_s")), r["client_cpu_pct"])' "$tmp/out.json"
}

# median_of "rate cpu" lines on stdin: "median min max cpu_median"
summarize() {
  $py -c 'import statistics,sys
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
r = [a for a, _ in rows]; c = [b for _, b in rows]
print(statistics.median(r), min(r), max(r), statistics.median(c))'
}

declare -A res
ran=()
for w in $workers; do
  t=$((2 * w))
  [ $((w + t)) -le "$ncpu" ] || t=$((ncpu - w))
  if [ "$t" -lt 1 ]; then
    echo "scaling: skipping $w worker(s): $ncpu cores leave none for the client" >&2
    continue
  fi
  ran+=("$w:$t")
  for mode in unary server-stream; do
    for name in $servers; do
      if [ "$name" = go ] && [ ! -x "$gobin" ]; then res[$mode,$w,$name]="missing"; continue; fi
      : >"$tmp/runs"
      for _ in $(seq "$runs"); do
        start_server "$name" "$w"
        run_case "$mode" "$w" "$t" >>"$tmp/runs"
        stop_server
      done
      res[$mode,$w,$name]=$(summarize <"$tmp/runs")
      echo "scaling: $mode, $w worker(s), $name: ${res[$mode,$w,$name]}" >&2
    done
  done
done

fmt_cell() { # "median min max cpu" THREADS
  [ "$1" = missing ] && { echo "n/a (no $gobin)"; return; }
  $py -c 'import sys
m, lo, hi, cpu = map(float, sys.argv[1].split()); t = int(sys.argv[2])
flag = " (client)" if cpu >= 90.0 * t else ""
print("{:,.0f} [{:,.0f} - {:,.0f}]{}".format(m, lo, hi, flag))' "$1" "$2"
}

echo
echo "Scaling on $ncpu cores ($(date -u +%Y-%m-%d)): median of $runs run(s) of $secs s, [lowest - highest]"
echo "unary: 16 B, 64 calls in flight per client thread; server-stream: 64 B, 16 streams per client thread"
echo
printf '| mode | workers | client threads | %s | Moonwire / grpc-go |\n' \
  "$(for n in $servers; do printf '%s | ' "$n"; done | sed 's/ | $//')"
printf '|---|---|---|%s---|\n' "$(for _ in $servers; do printf -- '---|'; done)"
for mode in unary server-stream; do
  for wt in "${ran[@]}"; do
    w=${wt%%:*} t=${wt##*:}
    cells=
    for name in $servers; do cells+="$(fmt_cell "${res[$mode,$w,$name]}" "$t") | "; done
    ratio=n/a
    if [[ " $servers " == *" moonwire "* && " $servers " == *" go "* &&
          ${res[$mode,$w,go]} != missing ]]; then
      ratio=$($py -c 'import sys; a=float(sys.argv[1].split()[0]); b=float(sys.argv[2].split()[0]); print("%.2f" % (a / b) if b else "n/a")' \
        "${res[$mode,$w,moonwire]}" "${res[$mode,$w,go]}")
    fi
    printf '| %s | %s | %s | %s%s |\n' "$mode" "$w" "$t" "$cells" "$ratio"
  done
done
