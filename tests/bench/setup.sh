#!/usr/bin/env bash
# Installs what the benchmark's peer servers and load tools need on Debian 12,
# then the Node peer's npm dependencies. Idempotent: with everything present it
# changes nothing and needs neither root nor the network.
#
# usage: tests/bench/setup.sh
#
# Go: Debian's grpc-go 1.33 is used offline in GOPATH mode (/usr/share/gocode);
# the code generators are protoc-gen-go (APIv2, 1.28) and protoc-gen-go-grpc
# (built from the grpc-go 1.33 tree, so it matches the library).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

packages=(
  build-essential pkg-config
  protobuf-compiler libprotobuf-dev
  # Go peer
  golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev
  golang-google-protobuf-dev protoc-gen-go protoc-gen-go-grpc
  # C++ peer and the C ceiling
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc
  # Python peer and check_peer.py
  python3 python3-grpcio python3-protobuf
  # load
  nghttp2-client
  # profile.sh
  valgrind
)

say() { printf 'bench-setup: %s\n' "$*"; }
die() { printf 'bench-setup: error: %s\n' "$*" >&2; exit 1; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    die "$1 needs root; run 'sudo tests/bench/setup.sh' (or as root), then retry"
  fi
}

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# Node >= 18 may come from elsewhere (e.g. NodeSource, which ships npm inside
# its nodejs package): take it as it is. Otherwise use Debian's nodejs + npm.
node_ok=0
if command -v node >/dev/null 2>&1; then
  v=$(node --version 2>/dev/null || true)
  major=${v#v}
  major=${major%%.*}
  if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -ge 18 ]; then
    node_ok=1
  fi
fi
if [ "$node_ok" = 0 ]; then
  packages+=(nodejs npm)
fi

# These conflict with protoc-gen-go / golang-github-golang-protobuf-1-5-dev;
# apt would remove them silently, so ask instead.
for p in golang-goprotobuf-dev protoc-gen-go-1-5 protoc-gen-go-1-3; do
  if installed "$p"; then
    die "$p is installed and conflicts with protoc-gen-go (APIv2) used by the Go peer; remove it first (apt-get remove $p)"
  fi
done

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  need_root "installing ${missing[*]}"
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v node >/dev/null 2>&1 || die "node is missing after the install"
command -v npm >/dev/null 2>&1 ||
  die "npm is missing (node $(node --version) came from outside Debian without npm); install npm for it, then retry"

# Node peer dependencies, pinned by package-lock.json.
if [ ! -d "$here/peers/node/node_modules" ]; then
  say "npm ci in peers/node"
  (cd "$here/peers/node" && npm ci --no-audit --no-fund --loglevel=error) ||
    die "npm ci failed in $here/peers/node"
fi

say "ok"
