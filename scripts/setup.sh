#!/usr/bin/env bash
# Installs what Moonwire needs on Debian 12 and fetches the upb headers that
# match the installed libupb.so (gRPC 1.51.1). Idempotent: a second run with
# everything present does nothing and needs neither root nor the network.
#
# usage: scripts/setup.sh [BUILD_DIR]     (default: build)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${1:-$here/build}
upb_dir=$build_dir/deps/upb

packages=(
  build-essential cmake pkg-config zlib1g-dev
  libgrpc-dev liblua5.4-dev lua5.4 libyaml-dev libssl-dev openssl libh2o-evloop-dev libhiredis-dev
  protobuf-compiler libprotobuf-dev
  lua-busted python3-grpcio python3-protobuf
  nghttp2-client grpc-proto dpkg-dev
)
expected_grpc=1.51.1

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    die "$1 needs root; run 'sudo make setup' (or as root), then retry"
  fi
}

apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
}

# 1. Debian packages
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  need_root "installing ${missing[*]}"
  say "installing ${missing[*]}"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. upb headers matching libupb.so from libgrpc-dev
bin_version=$(dpkg-query -W -f='${Version}' libgrpc-dev)
src_version=$(dpkg-query -W -f='${source:Version}' libgrpc-dev)
upstream=${src_version%%-*}
upstream=${upstream#*:}
[ "$upstream" = "$expected_grpc" ] ||
  die "libgrpc-dev is $bin_version, Moonwire is built against gRPC $expected_grpc"

stamp=$upb_dir/VERSION
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$src_version" ]; then
  exit 0
fi

need_root "fetching the grpc $src_version source package"
if ! grep -rqsE '^(deb-src .*bookworm|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  say "adding a deb-src entry for bookworm"
  cat > /etc/apt/sources.list.d/moonwire-deb-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_updated=0
fi
apt_update

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say "downloading grpc $src_version source for the upb headers"
(cd "$tmp" && apt-get source --download-only -qq "grpc=$src_version" >/dev/null 2>&1) ||
  die "apt-get source --download-only grpc=$src_version failed"
orig=$(ls "$tmp"/grpc_"$upstream".orig.tar.* 2>/dev/null | head -n 1)
[ -n "$orig" ] || die "no grpc_$upstream.orig tarball in the source package"

top=grpc-$upstream
rm -rf "$upb_dir"
mkdir -p "$upb_dir"
tar -xf "$orig" -C "$tmp" --wildcards \
  "$top/third_party/upb/upb/*.h" "$top/third_party/upb/upb/*.inc" \
  "$top/third_party/upb/third_party/utf8_range/*.h" \
  "$top/src/core/ext/upb-generated/google/protobuf/descriptor.upb.h" ||
  die "the grpc source tarball lacks the upb headers"
cp -r "$tmp/$top/third_party/upb/upb" "$upb_dir/upb"
mkdir -p "$upb_dir/google/protobuf"
cp "$tmp/$top/src/core/ext/upb-generated/google/protobuf/descriptor.upb.h" "$upb_dir/google/protobuf/"
cp "$tmp/$top/third_party/upb/third_party/utf8_range/utf8_range.h" "$upb_dir/"
echo "$src_version" > "$stamp"
say "upb headers for grpc $src_version in $upb_dir"
