/* The channel arguments of a gRPC listener, from the config. Each setting
 * says why it is what it is in docs/config.md; what each costs a call is in
 * docs/performance.md ("Hardening: what it costs"). */
#include "core/mw_transport.h"

#include <limits.h>
#include <stdint.h>

static void add_int(grpc_arg *args, size_t *n, const char *key, int64_t v) {
  if (v > INT_MAX) v = INT_MAX;
  args[*n].type = GRPC_ARG_INTEGER;
  args[*n].key = (char *)key;
  args[*n].value.integer = (int)v;
  (*n)++;
}

size_t mw_transport_args(const mw_config *cfg, grpc_arg *args, grpc_resource_quota **quota) {
  size_t n = 0;
  *quota = NULL;
  add_int(args, &n, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, cfg->limits.max_receive_bytes);
  add_int(args, &n, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, cfg->limits.max_send_bytes);
  add_int(args, &n, GRPC_ARG_MAX_CONCURRENT_STREAMS, cfg->limits.max_concurrent_streams);
  add_int(args, &n, GRPC_ARG_MAX_METADATA_SIZE, cfg->limits.max_header_list_size);
  add_int(args, &n, GRPC_ARG_KEEPALIVE_TIME_MS, cfg->keepalive.time_ms);
  add_int(args, &n, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, cfg->keepalive.timeout_ms);
  add_int(args, &n, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
          cfg->keepalive.min_client_ping_ms);
  add_int(args, &n, GRPC_ARG_HTTP2_MAX_PING_STRIKES, cfg->keepalive.max_ping_strikes);
  /* Either of these puts core's connection-lifetime filter on every call's
   * path (about 4,000 instructions a unary call: docs/performance.md), so
   * 0 leaves them out altogether. */
  if (cfg->keepalive.max_connection_idle_ms > 0)
    add_int(args, &n, GRPC_ARG_MAX_CONNECTION_IDLE_MS, cfg->keepalive.max_connection_idle_ms);
  if (cfg->keepalive.max_connection_age_ms > 0)
    add_int(args, &n, GRPC_ARG_MAX_CONNECTION_AGE_MS, cfg->keepalive.max_connection_age_ms);
  if (cfg->keepalive.max_connection_age_grace_ms > 0)
    add_int(args, &n, GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
            cfg->keepalive.max_connection_age_grace_ms);
  /* A second server on a port in use is an error, not a silent share. */
  add_int(args, &n, GRPC_ARG_ALLOW_REUSEPORT, 0);
  /* What a stream may buffer for writes marked GRPC_WRITE_BUFFER_HINT. */
  add_int(args, &n, GRPC_ARG_HTTP2_WRITE_BUFFER_SIZE, MW_WRITE_BUFFER_SIZE);
  /* Nothing reads channelz here; its per-call counters are pure cost. */
  add_int(args, &n, GRPC_ARG_ENABLE_CHANNELZ, 0);
  add_int(args, &n, GRPC_ARG_MAX_CHANNEL_TRACE_EVENT_MEMORY_PER_NODE, 0);
  /* Hardened transport (docs/config.md, transport): windows that do not
   * grow per stream, the smallest frames, slow handshakes cut short, and
   * core's memory accounting with a ceiling. */
  add_int(args, &n, GRPC_ARG_HTTP2_BDP_PROBE, cfg->transport.bdp_probe);
  add_int(args, &n, GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, cfg->transport.stream_window);
  add_int(args, &n, GRPC_ARG_HTTP2_MAX_FRAME_SIZE, cfg->transport.max_frame_size);
  add_int(args, &n, GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, cfg->transport.handshake_timeout_ms);
  add_int(args, &n, GRPC_ARG_TCP_TX_ZEROCOPY_ENABLED, 0);
  if (cfg->transport.memory_mb > 0) {
    *quota = grpc_resource_quota_create("moonwire");
    grpc_resource_quota_resize(*quota, (size_t)cfg->transport.memory_mb << 20);
    args[n].type = GRPC_ARG_POINTER;
    args[n].key = (char *)GRPC_ARG_RESOURCE_QUOTA;
    args[n].value.pointer.p = *quota;
    args[n].value.pointer.vtable = grpc_resource_quota_arg_vtable();
    n++;
  }
  /* Compressed requests reach the call layer as they came off the wire:
   * core 1.51 inflates a whole message before it checks its size (a
   * 500 KB gzip bomb cost 564 MB), core/mw_compress inflates in bounded
   * steps instead. */
  add_int(args, &n, GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, 0);
  return n;
}
