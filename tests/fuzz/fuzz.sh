#!/usr/bin/env bash
# The libFuzzer targets (tests/fuzz/fuzz_*.c), built with clang in a build
# of their own (BUILD_DIR/fuzz) so that the main build stays on gcc.
#
# usage: tests/fuzz/fuzz.sh build BUILD_DIR
#        tests/fuzz/fuzz.sh run BUILD_DIR TARGET SECONDS [CRASH_DIR]
#
# run: every input of the checked-in corpus (tests/fuzz/corpus/TARGET) first,
# then SECONDS of fuzzing from it and BUILD_DIR/fuzz/corpus/TARGET, which
# keeps what runs of more than 10 seconds find. A crashing input is written to CRASH_DIR
# (default BUILD_DIR/fuzz/crashes) as TARGET-crash-<sha1>; exits non-zero.
# TARGET: codec, config, schema, inflate, json or transcode. clang: $MW_FUZZ_CC, else
# clang-14 (tests/fuzz/setup.sh installs it), else clang.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
die() { printf 'fuzz: %s\n' "$*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 build BUILD_DIR | run BUILD_DIR TARGET SECONDS [CRASH_DIR]"
cmd=$1
build=$(cd "$2" && pwd)
out=$build/fuzz

pick_clang() {
  local cc=${MW_FUZZ_CC:-}
  if [ -z "$cc" ]; then
    for c in clang-14 clang; do
      command -v "$c" >/dev/null && { cc=$c; break; }
    done
  fi
  [ -n "$cc" ] || die "clang not found: run tests/fuzz/setup.sh"
  printf '%s' "$cc"
}

case $cmd in
build)
  [ -f "$build/gen/mw_project_protos.c" ] || die "$build/gen is missing: build the runtime first (make build)"
  cc=$(pick_clang)
  cxx=${cc/clang/clang++}
  if [ ! -f "$out/CMakeCache.txt" ]; then
    cmake -S "$here" -B "$out" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
      -DMW_SOURCE_DIR="$src" -DMW_GEN_DIR="$build/gen" \
      -DMW_UPB_INCLUDE="$build/deps/upb" >/dev/null
  fi
  cmake --build "$out" -j "${JOBS:-2}"
  ;;
run)
  [ $# -ge 4 ] || die "usage: $0 run BUILD_DIR TARGET SECONDS [CRASH_DIR]"
  target=$3
  seconds=$4
  crashes=${5:-$out/crashes}
  bin=$out/fuzz_$target
  [ -x "$bin" ] || die "$bin is missing: $0 build $2"
  seeds=$here/corpus/$target
  [ -d "$seeds" ] || die "no corpus in $seeds"
  # A brief run (make test's) starts from the checked-in inputs alone, so
  # its time does not grow with what longer runs found.
  if [ "$seconds" -le 10 ]; then
    mkdir -p "$out/corpus"
    work=$(mktemp -d "$out/corpus/$target-brief.XXXXXX")
    trap 'rm -rf "$work"' EXIT
  else
    work=$out/corpus/$target
  fi
  mkdir -p "$work" "$crashes"
  # Leaks are findings too; the sanitizers stop at the first error.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  # Every checked-in input, each one a regression test.
  "$bin" -runs=0 -artifact_prefix="$crashes/$target-" "$seeds"
  if [ "$seconds" -gt 0 ]; then
    "$bin" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
      -timeout=10 -print_final_stats=1 -artifact_prefix="$crashes/$target-" \
      "$work" "$seeds"
  fi
  ;;
*)
  die "unknown command '$cmd' (build or run)"
  ;;
esac
