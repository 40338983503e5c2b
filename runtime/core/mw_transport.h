/* The channel arguments a gRPC listener is created with, from the config:
 * message and header limits, keepalive and connection lifetimes, and the
 * hardened transport (docs/config.md, keepalive and transport). One function,
 * so that the benchmark's C echo (tests/bench/peers/cecho) can run gRPC core
 * with exactly the settings Moonwire serves with, and the ceiling it measures
 * differs from Moonwire only by what Moonwire adds to a call. */
#ifndef MW_TRANSPORT_H
#define MW_TRANSPORT_H

#include <stddef.h>

#include <grpc/grpc.h>

#include "config/mw_config.h"

/* The most arguments mw_transport_args writes. */
#define MW_TRANSPORT_MAX_ARGS 24

/* Bytes of hinted writes a stream may buffer before gRPC core flushes. */
#define MW_WRITE_BUFFER_SIZE (64 * 1024)

/* Fills args (room for MW_TRANSPORT_MAX_ARGS) from cfg and returns how many
 * it wrote. *quota gets the resource quota one of them points at, or NULL
 * when cfg->transport.memory_mb is 0: the caller owns that reference and
 * drops it (grpc_resource_quota_unref) once grpc_server_create has taken
 * its own. The keys are static strings; args hold no other allocation. */
size_t mw_transport_args(const mw_config *cfg, grpc_arg *args, grpc_resource_quota **quota);

#endif
