#!/bin/sh
# Build mwload (the streaming load generator) into OUT_DIR. CMake builds the
# same program as its `mwload` target (BUILD_DIR/bench/mwload); this script
# is for building it without a configured tree.
# usage: tests/bench/client/build.sh OUT_DIR
set -eu
if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
rt=$here/../../../runtime
mkdir -p "$1"
# Abseil tuned as Moonwire tunes it (runtime/base/mw_absl.cc: no deadlock
# detection), so the client pays what the server pays for each lock.
${CXX:-c++} -std=c++14 -O2 -Wall -Wextra -Werror -I"$rt" -c "$rt/base/mw_absl.cc" \
  -o "$1/mwload-absl.o"
# Source before the libraries, so linkers that default to --as-needed work.
${CC:-cc} -O2 -std=c11 -Wall -Wextra -Werror -I"$rt" $(pkg-config --cflags grpc) \
  "$here/mwload.c" "$1/mwload-absl.o" -o "$1/mwload" \
  $(pkg-config --libs grpc absl_synchronization) -lstdc++
echo "built $1/mwload"
