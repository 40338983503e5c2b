#!/usr/bin/env bash
# Installs clang with libFuzzer for the fuzz targets (tests/fuzz/), pinned to
# Debian 12's clang 14. A test-only tool: the runtime builds with gcc.
# Idempotent: with clang-14 and its libFuzzer present it needs neither root
# nor the network.
#
# usage: tests/fuzz/setup.sh      (tests/tools/setup.sh runs it)
set -euo pipefail

version=1:14.0.6-12
packages=(clang-14 libclang-rt-14-dev)
say() { printf 'fuzz-setup: %s\n' "$*"; }
die() { printf 'fuzz-setup: error: %s\n' "$*" >&2; exit 1; }

# clang prints the bare name back when it has no such library.
have() {
  command -v clang-14 >/dev/null 2>&1 &&
    [ -f "$(clang-14 -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]
}
have && exit 0

[ "$(id -u)" = 0 ] || die "clang-14 with libFuzzer is missing; run 'sudo tests/fuzz/setup.sh', then retry"
say "installing ${packages[*]} ($version)"
apt-get update -qq
pinned=()
for p in "${packages[@]}"; do pinned+=("$p=$version"); done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pinned[@]}" >/dev/null
have || die "clang-14 still cannot find libFuzzer after the install"
