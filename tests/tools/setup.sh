#!/usr/bin/env bash
# Installs the clients that only the tests use (buf, for `buf curl`
# through server reflection and against the HTTP listener; Connect-ES's
# Node clients, @connectrpc/connect-node with @bufbuild/protobuf, for
# Connect and gRPC-Web; the browser side: puppeteer-core, esbuild, which
# bundles the test pages, Google's grpc-web and @connectrpc/connect-web;
# ws and eventsource, the WebSocket and SSE clients), pinned by package-lock.json, into a cache
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

# Debian packages only tests use: raw HTTP/2 frames for the tests' own
# client and probes (python3-hpack, python3-hyperframe), nginx, the front
# proxy of docs/deploy.md, Prometheus (its server and promtool) with the
# Python client's text parser, which read the admin listener's /metrics, and
# PyJWT and python3-cryptography, which make the bearer tokens of the auth
# tests, and redis-server, which the Redis shared-dict tests start on a free
# loopback port of their own, and chromium, the headless browser the
# browser tests drive through puppeteer-core (gRPC-Web, Connect-Web, CORS
# and the console, from pages served on loopback), and systemd, whose
# systemd-analyze checks the unit of docs/deploy.md. Debian's versions, as
# the CI image has them.
apt_missing=()
for p in python3-hpack python3-hyperframe nginx prometheus python3-prometheus-client python3-jwt python3-cryptography redis-server chromium systemd; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] ||
    apt_missing+=("$p")
done
if [ ${#apt_missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${apt_missing[*]}; run 'sudo tests/tools/setup.sh', then retry"
  say "installing ${apt_missing[*]}"
  apt-get update -qq
  # The tests start their own nginx and Prometheus: keep the packages from
  # starting theirs (ports 80 and 9090) with a policy-rc.d that denies, only
  # if there is none already.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null ||
    { [ "$made_policy" = 0 ] || rm -f "$policy"; die "apt-get install ${apt_missing[*]} failed"; }
  [ "$made_policy" = 0 ] || rm -f "$policy"
fi

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
  for m in @connectrpc/connect-node @connectrpc/connect-web puppeteer-core grpc-web ws eventsource; do
    [ -f "$dir.tmp/node_modules/$m/package.json" ] || die "$m is missing after the install"
  done
  "$dir.tmp/node_modules/.bin/esbuild" --version >/dev/null || die "esbuild does not run after the install"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
fi
ln -sfn "$dir/node_modules" "$here/node_modules"
# clang with libFuzzer, for the fuzz targets' tests (tests/fuzz/).
"$here/../fuzz/setup.sh"
