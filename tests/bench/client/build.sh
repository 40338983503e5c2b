#!/bin/sh
# Build mwload (the streaming load generator) into OUT_DIR.
# usage: tests/bench/client/build.sh OUT_DIR
set -eu
if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
# Source before the libraries, so linkers that default to --as-needed work.
cc -O2 -std=c11 -Wall -Wextra -Werror "$here/mwload.c" -o "$1/mwload" \
  $(pkg-config --cflags --libs grpc)
echo "built $1/mwload"
