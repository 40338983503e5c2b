#!/usr/bin/env bash
# The layering rule of runtime/ (docs/architecture.md), checked on includes:
# each folder may include only the folders below it, core/ never sees Lua,
# lua/ never sees gRPC. Prints every violation as file:line and fails.
set -u
cd "$(dirname "$0")/../../runtime" || exit 2

bad=0
# forbid FOLDER PATTERN WHY: no file of FOLDER may include what matches.
forbid() {
  local folder=$1 pattern=$2 why=$3 hits
  hits=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($pattern)" \
           "$folder"/*.[ch] "$folder"/*.cc 2>/dev/null)
  if [ -n "$hits" ]; then
    printf '%s\n' "$hits" | sed "s|^|runtime/|; s|\$|   <- $why|"
    bad=1
  fi
}

lower_than_core='core/|lua/|gen/|cmd/|http/'
forbid base   "shared/|trace/|config/|schema/|codec/|tls/|compress/|metrics/|$lower_than_core|lua\.h|lauxlib\.h|grpc/|openssl/" "base/ is the bottom layer"
forbid tls    "config/|schema/|codec/|compress/|$lower_than_core|lua\.h|grpc/" "tls/ sits on base/ only"
forbid compress "config/|schema/|codec/|tls/|$lower_than_core|lua\.h|grpc/" "compress/ sits on base/ only"
forbid trace  "config/|schema/|codec/|tls/|compress/|$lower_than_core|lua\.h|grpc/" "trace/ sits on base/ only"
forbid shared "trace/|config/|schema/|codec/|tls/|compress/|metrics/|$lower_than_core|lua\.h|lauxlib\.h|grpc/" "shared/ sits on base/ only"
forbid sessions "shared/mw_(shared|shdict|redis)|trace/|config/|schema/|codec/|tls/|compress/|metrics/|$lower_than_core|lua\.h|lauxlib\.h|grpc/" "sessions/ sits on base/ (and shared/'s Redis connection, mw_rconn.h) only"
forbid config "schema/|codec/|tls/|compress/|$lower_than_core|lua\.h|grpc/" "config/ sits on base/ only"
forbid schema "codec/|tls/|compress/|$lower_than_core|lua\.h|grpc/" "schema/ sits on base/ only"
forbid codec  "compress/|$lower_than_core|grpc/" "codec/ is a leaf under lua/"
forbid core   "lua\.h|lauxlib\.h|lualib\.h|lua/|codec/|gen/|cmd/|http/" "core/ never includes Lua or the layers above it"
forbid metrics "trace/|config/|schema/|codec/|tls/|compress/|$lower_than_core|lua\.h|grpc/|h2o" "metrics/ sits on base/ only"
forbid http   "cmd/|gen/|grpc/|lua\.h|lauxlib\.h" "http/ sees core/ and lua/ by their public headers only"
forbid lua    "grpc/|compress/|core/mw_core_internal\.h|core/mw_server\.h|core/mw_mailbox\.h|core/mw_credentials\.h|gen/|cmd/|http/" "lua/ never includes gRPC or the layers above it"
# Of tls/, lua/ sees only the primitives whose headers have no OpenSSL
# types: token signatures (mw_jws.h) and digests (mw_digest.h).
hits=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]tls/' lua/*.[ch] 2>/dev/null |
       grep -vE '[<"]tls/(mw_jws|mw_digest)\.h[>"]')
if [ -n "$hits" ]; then
  printf '%s\n' "$hits" | sed "s|^|runtime/|; s|\$|   <- lua/ uses tls/mw_jws.h and tls/mw_digest.h only|"
  bad=1
fi
forbid gen    "cmd/|http/|grpc/|lua\.h" "gen/ joins core/ and lua/ by their headers only"
# OpenSSL is tls/'s concern alone (gRPC core links its own use of it).
for f in config shared sessions schema codec compress trace metrics core lua gen cmd http; do
  forbid "$f" "openssl/" "only tls/ includes OpenSSL"
done
# What siblings share stays among them.
for f in base config schema lua gen cmd; do
  forbid "$f" "codec/mw_codec_internal\.h|codec/mw_codec_reflect\.h" "codec's internals are for codec/ (and its tests) only"
done
for f in base config schema codec metrics lua gen cmd http; do
  forbid "$f" "core/mw_core_internal\.h|core/mw_credentials\.h" "core's internals are for core/ only"
done

if [ "$bad" = 0 ]; then
  echo "layers: 1 passed, 0 failed"
else
  echo "layers: 0 passed, 1 failed"
  exit 1
fi
