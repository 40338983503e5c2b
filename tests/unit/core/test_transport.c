/* The listener's channel arguments (core/mw_transport.h): the config's
 * values under gRPC core's keys, the connection lifetimes left out when 0
 * (so core's lifetime filter stays off every call's path), the resource
 * quota owned as documented, and a server that core creates from them. */
#include <limits.h>
#include <string.h>

#include <grpc/grpc.h>

#include "base/mw_absl.h"
#include "config/mw_config.h"
#include "core/mw_transport.h"
#include "mw_test.h"

/* The integer under key, or -1 when key is absent; -2 when it is there
 * twice or is not an integer. */
static long long int_arg(const grpc_arg *args, size_t n, const char *key) {
  long long v = -1;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(args[i].key, key) != 0) continue;
    if (v != -1 || args[i].type != GRPC_ARG_INTEGER) return -2;
    v = args[i].value.integer;
  }
  return v;
}

static const grpc_arg *find(const grpc_arg *args, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(args[i].key, key) == 0) return &args[i];
  return NULL;
}

static void test_defaults(void) {
  mw_config c;
  mw_config_init(&c);
  grpc_arg args[MW_TRANSPORT_MAX_ARGS];
  grpc_resource_quota *quota = NULL;
  size_t n = mw_transport_args(&c, args, &quota);
  MW_CHECK(n > 0 && n <= MW_TRANSPORT_MAX_ARGS);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH), 4 << 20);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_MAX_CONCURRENT_STREAMS), 100);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_MAX_METADATA_SIZE), 16384);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_KEEPALIVE_TIME_MS), 60000);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_MAX_CONNECTION_IDLE_MS), 300000);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_MAX_CONNECTION_AGE_MS), 1800000);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS), 60000);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_HTTP2_BDP_PROBE), 0);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES), 65536);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_HTTP2_MAX_FRAME_SIZE), 16384);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_HTTP2_WRITE_BUFFER_SIZE), MW_WRITE_BUFFER_SIZE);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_ENABLE_CHANNELZ), 0);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION), 0);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_ALLOW_REUSEPORT), 0);
  /* the 1 GiB quota, passed by pointer and owned by the caller */
  const grpc_arg *q = find(args, n, GRPC_ARG_RESOURCE_QUOTA);
  MW_CHECK(q != NULL && quota != NULL);
  if (q) {
    MW_CHECK_INT(q->type, GRPC_ARG_POINTER);
    MW_CHECK(q->value.pointer.p == quota);
  }
  /* core takes the arguments, the quota's reference stays the caller's */
  grpc_channel_args cargs = {n, args};
  grpc_server *s = grpc_server_create(&cargs, NULL);
  MW_CHECK(s != NULL);
  if (quota) grpc_resource_quota_unref(quota);
  if (s) grpc_server_destroy(s);
  mw_config_free(&c);
}

static void test_lifetimes_off_and_no_quota(void) {
  mw_config c;
  mw_config_init(&c);
  c.keepalive.max_connection_idle_ms = 0;
  c.keepalive.max_connection_age_ms = 0;
  c.keepalive.max_connection_age_grace_ms = 0;
  c.transport.memory_mb = 0;
  c.transport.bdp_probe = 1;
  c.limits.max_receive_bytes = (int64_t)INT_MAX + 10; /* clamped, not wrapped */
  grpc_arg args[MW_TRANSPORT_MAX_ARGS];
  grpc_resource_quota *quota = (grpc_resource_quota *)&c; /* must be reset */
  size_t n = mw_transport_args(&c, args, &quota);
  MW_CHECK(quota == NULL);
  MW_CHECK(find(args, n, GRPC_ARG_RESOURCE_QUOTA) == NULL);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_MAX_CONNECTION_IDLE_MS), -1);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_MAX_CONNECTION_AGE_MS), -1);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS), -1);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_HTTP2_BDP_PROBE), 1);
  MW_CHECK_INT(int_arg(args, n, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH), INT_MAX);
  grpc_channel_args cargs = {n, args};
  grpc_server *s = grpc_server_create(&cargs, NULL);
  MW_CHECK(s != NULL);
  if (s) grpc_server_destroy(s);
  mw_config_free(&c);
}

int main(void) {
  mw_absl_fast_mutexes();
  grpc_init();
  MW_RUN(test_defaults);
  MW_RUN(test_lifetimes_off_and_no_quota);
  grpc_shutdown();
  return mw_test_done();
}
