#!/usr/bin/env bash
# Installs the clients that only the tests use (today buf, for `buf curl`
# through server reflection), pinned by package-lock.json, into a cache
# outside the checkout keyed by the lock file's hash, and links it here as
# tests/tools/node_modules. Idempotent: with the cache present it needs
# neither root nor the network, so a clean clone on the same machine reuses
# it.
#
# usage: tests/tools/setup.sh      (make test runs it)
# cache: $MOONWIRE_TOOLS_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/moonwire/test-tools
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
say() { printf 'test-tools: %s\n' "$*"; }
die() { printf 'test-tools: error: %s\n' "$*" >&2; exit 1; }

if ! command -v npm >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "npm is missing; run 'sudo apt-get install nodejs npm', then retry"
  say "installing nodejs npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

cache_root=${MOONWIRE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moonwire/test-tools}
key=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)
dir=$cache_root/$key
if [ ! -x "$dir/node_modules/.bin/buf" ]; then
  say "npm ci into $dir"
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  cp "$here/package.json" "$here/package-lock.json" "$dir.tmp/"
  (cd "$dir.tmp" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
  "$dir.tmp/node_modules/.bin/buf" --version >/dev/null || die "buf does not run after the install"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
fi
ln -sfn "$dir/node_modules" "$here/node_modules"
# clang with libFuzzer, for the fuzz targets' tests (tests/fuzz/).
"$here/../fuzz/setup.sh"
