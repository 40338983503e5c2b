#!/usr/bin/env bash
# Builds the benchmark's peer servers into BUILD_DIR/bench/:
#   bench-go     grpc-go 1.33 (Debian, GOPATH mode, offline)
#   bench-cpp    C++ gRPC 1.51 callback API
#   bench-cecho  plain C on gRPC core (the ceiling)
# The Node and Python peers run from source (tests/bench/peers/{node,python});
# this script only checks that they can start (node_modules, grpcio).
# Generated code goes to BUILD_DIR/bench/, never into the source tree.
# Each output is rebuilt only when one of its inputs is newer.
#
# usage: tests/bench/build.sh BUILD_DIR
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
peers=$here/peers
proto_dir=$here/proto
proto=$proto_dir/bench.proto
mkdir -p "$1/bench"
out=$(cd "$1/bench" && pwd)

CC=${CC:-gcc}
CXX=${CXX:-g++}

say() { printf 'bench-build: %s\n' "$*"; }
die() { printf 'bench-build: error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 ||
    die "$1 not found ($2); run tests/bench/setup.sh first"
}

# stale TARGET INPUT...: true when TARGET is missing or older than an input
# (or than this script).
stale() {
  local t=$1 f
  shift
  [ -e "$t" ] || return 0
  for f in "$@" "$here/build.sh"; do
    [ "$f" -nt "$t" ] && return 0
  done
  return 1
}

need protoc protobuf-compiler
need pkg-config pkg-config
need "$CC" build-essential
need "$CXX" build-essential
need go golang-go
need protoc-gen-go protoc-gen-go
need protoc-gen-go-grpc protoc-gen-go-grpc
need grpc_cpp_plugin protobuf-compiler-grpc
pkg-config --exists grpc++ grpc protobuf ||
  die "pkg-config cannot find grpc++/grpc/protobuf (libgrpc++-dev, libprotobuf-dev); run tests/bench/setup.sh first"

# ---- Go: protoc-gen-go (APIv2) + protoc-gen-go-grpc, GOPATH mode ----------
go_build() {
  local gopath=$out/go/gopath
  local pkg=$gopath/src/moonwire.dev/bench/benchpb
  local bin=$out/bench-go
  if stale "$pkg/bench_grpc.pb.go" "$proto"; then
    say "go: generating moonwire.dev/bench/benchpb"
    rm -rf "$pkg"
    mkdir -p "$gopath/src"
    protoc -I"$proto_dir" --go_out="$gopath/src" --go-grpc_out="$gopath/src" "$proto"
  fi
  if stale "$bin" "$peers/go/main.go" "$pkg/bench.pb.go" "$pkg/bench_grpc.pb.go"; then
    say "go: building bench-go"
    # Offline, against Debian's /usr/share/gocode: no modules, no proxy.
    (cd "$out/go" &&
      env GO111MODULE=off GOFLAGS= GOPROXY=off GOTOOLCHAIN=local \
        GOPATH="$gopath:/usr/share/gocode" \
        GOCACHE="${GOCACHE:-$out/go/cache}" \
        go build -o "$bin.tmp" "$peers/go/main.go") ||
      die "go build failed"
    mv -f "$bin.tmp" "$bin"
  fi
}

# ---- C++: protoc + grpc_cpp_plugin, callback API --------------------------
cpp_build() {
  local gen=$out/cpp/gen obj=$out/cpp/obj bin=$out/bench-cpp
  local cxxflags=(-std=c++17 -O2 -Wall -Wextra -I"$gen")
  # shellcheck disable=SC2207
  cxxflags+=($(pkg-config --cflags grpc++ protobuf))
  mkdir -p "$gen" "$obj"
  if stale "$gen/bench.grpc.pb.cc" "$proto"; then
    say "cpp: generating bench.pb.* bench.grpc.pb.*"
    protoc -I"$proto_dir" --cpp_out="$gen" --grpc_out="$gen" \
      --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" "$proto"
  fi
  local pids=() srcs=("$gen/bench.pb.cc" "$gen/bench.grpc.pb.cc" "$peers/cpp/server.cc")
  local objs=() s o
  for s in "${srcs[@]}"; do
    o=$obj/$(basename "${s%.cc}").o
    objs+=("$o")
    if stale "$o" "$s" "$gen/bench.pb.h" "$gen/bench.grpc.pb.h"; then
      say "cpp: compiling $(basename "$s")"
      "$CXX" "${cxxflags[@]}" -c "$s" -o "$o.tmp" && mv -f "$o.tmp" "$o" &
      pids+=($!)
    fi
  done
  local failed=0 p
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  [ $failed = 0 ] || die "C++ compilation failed"
  if stale "$bin" "${objs[@]}"; then
    say "cpp: linking bench-cpp"
    # shellcheck disable=SC2046
    "$CXX" -O2 -o "$bin.tmp" "${objs[@]}" $(pkg-config --libs grpc++ protobuf) -lpthread ||
      die "linking bench-cpp failed"
    mv -f "$bin.tmp" "$bin"
  fi
}

# ---- C: gRPC core, the ceiling ---------------------------------------------
cecho_build() {
  local bin=$out/bench-cecho rt=$here/../../runtime build=$out/..
  # --moonwire-transport takes Moonwire's channel arguments from the runtime's
  # own code (core/mw_transport.c over the config's defaults), linked from the
  # build's static libraries.
  local libs="$build/libmwcore.a $build/libmwconfig.a $build/libmwbase.a"
  for lib in $libs; do
    [ -f "$lib" ] || die "$lib is missing: build Moonwire first (make build)"
  done
  # shellcheck disable=SC2086
  if stale "$bin" "$peers/cecho/cecho.c" "$rt/base/mw_absl.cc" "$rt/base/mw_absl.h" $libs; then
    say "cecho: building bench-cecho"
    # Abseil tuned as Moonwire tunes it (runtime/base/mw_absl.cc), so that the
    # ceiling runs gRPC core exactly as Moonwire does.
    "$CXX" -std=c++14 -O2 -Wall -Wextra -Werror -I"$rt" -c "$rt/base/mw_absl.cc" \
      -o "$out/cecho-absl.o" || die "building bench-cecho failed"
    # shellcheck disable=SC2046,SC2086
    "$CC" -std=c11 -O2 -Wall -Wextra -Wpedantic -Wshadow -Werror -I"$rt" \
      $(pkg-config --cflags grpc) "$peers/cecho/cecho.c" "$out/cecho-absl.o" $libs \
      -o "$bin.tmp" $(pkg-config --libs grpc absl_synchronization yaml-0.1) -lstdc++ ||
      die "building bench-cecho failed"
    mv -f "$bin.tmp" "$bin"
  fi
}

# ---- run-from-source peers -------------------------------------------------
source_checks() {
  need node nodejs
  if [ ! -d "$peers/node/node_modules/@grpc/grpc-js" ] ||
    [ ! -d "$peers/node/node_modules/@grpc/proto-loader" ]; then
    die "peers/node/node_modules is missing; run tests/bench/setup.sh (npm ci)"
  fi
  /usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null ||
    die "/usr/bin/python3 cannot import grpc/protobuf (python3-grpcio); run tests/bench/setup.sh first"
}

source_checks
cecho_build
go_build
cpp_build
if stale "$out/mwload" "$here/client/mwload.c"; then
  "$here/client/build.sh" "$out" >/dev/null || die "building mwload failed"
fi
say "ok: $out/bench-go $out/bench-cpp $out/bench-cecho $out/mwload"
