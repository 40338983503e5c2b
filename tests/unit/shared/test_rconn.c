/* The Redis connection (shared/mw_rconn.h) and the Redis dict backend
 * (shared/mw_redis.h) without a Redis: URLs read or refused with their
 * reason, and a dict whose Redis is not there answering at once with the
 * connection's reason, on a blocking exec and on a submit alike (the
 * suites against a real redis-server are tests/lua/shared_redis_spec.lua
 * and tests/e2e/test_shared_redis.py). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "mw_test.h"
#include "shared/mw_rconn.h"
#include "shared/mw_redis.h"

static void test_urls(void) {
  mw_rconn_addr a;
  char err[256];
  MW_CHECK_INT(mw_rconn_parse_url("redis://127.0.0.1:6390/2", &a, err, sizeof err), 0);
  MW_CHECK_STR(a.host, "127.0.0.1");
  MW_CHECK_INT(a.port, 6390);
  MW_CHECK_INT(a.db, 2);
  MW_CHECK_STR(a.password, "");
  MW_CHECK_INT(mw_rconn_parse_url("redis://cache.internal", &a, err, sizeof err), 0);
  MW_CHECK_STR(a.host, "cache.internal");
  MW_CHECK_INT(a.port, 6379);
  MW_CHECK_INT(a.db, 0);
  MW_CHECK_INT(mw_rconn_parse_url("redis://:s3cret@h:1/", &a, err, sizeof err), 0);
  MW_CHECK_STR(a.password, "s3cret");
  MW_CHECK_STR(a.host, "h");
  MW_CHECK_INT(a.port, 1);
  MW_CHECK_INT(mw_rconn_parse_url("http://h", &a, err, sizeof err), -1);
  MW_CHECK_CONTAINS(err, "is not a redis:// URL");
  MW_CHECK_INT(mw_rconn_parse_url("redis://h:0", &a, err, sizeof err), -1);
  MW_CHECK_CONTAINS(err, "bad port");
  MW_CHECK_INT(mw_rconn_parse_url("redis://h:65536", &a, err, sizeof err), -1);
  MW_CHECK_INT(mw_rconn_parse_url("redis://h:6379/x", &a, err, sizeof err), -1);
  MW_CHECK_CONTAINS(err, "bad database number");
  MW_CHECK_INT(mw_rconn_parse_url("redis://", &a, err, sizeof err), -1);
  MW_CHECK_CONTAINS(err, "names no host");
  MW_CHECK_INT(mw_rconn_parse_url("redis://h?x=1", &a, err, sizeof err), -1);
}

/* A loopback port nothing listens on: bound, then closed. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bind(fd, (struct sockaddr *)&sa, sizeof sa);
  socklen_t len = sizeof sa;
  getsockname(fd, (struct sockaddr *)&sa, &len);
  close(fd);
  return ntohs(sa.sin_port);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct waiter {
  mw_shared_async a;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int done;
} waiter;

static void on_done(mw_shared_async *a) {
  waiter *w = (waiter *)a;
  pthread_mutex_lock(&w->lock);
  w->done = 1;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

static void test_redis_not_there(void) {
  char url[64], err[256];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", closed_port());
  mw_redis *r = mw_redis_new(url, "t:", 2000, err, sizeof err);
  MW_CHECK(r != NULL);
  if (!r) return;
  mw_shbuf buf = {0};
  mw_shres res;
  mw_shreq get = {.op = MW_SHOP_GET, .key = "k", .klen = 1};
  /* refused at once (the first attempt may still be under way: its answer
   * is waited for, well within the timeout) */
  double t0 = now_s();
  MW_CHECK_INT(mw_redis_backend.exec(r, &get, &res, &buf), MW_SH_BACKEND);
  MW_CHECK(now_s() - t0 < 1.0);
  MW_CHECK_INT(res.val.type, MW_SHV_STR);
  if (res.val.type == MW_SHV_STR)
    MW_CHECK_STR(res.val.u.s.p, "redis: connection refused");
  /* the same through submit, answered on the connection's thread */
  waiter w = {.a.done = on_done};
  pthread_mutex_init(&w.lock, NULL);
  pthread_cond_init(&w.cond, NULL);
  MW_CHECK_INT(mw_redis_backend.submit(r, &get, &w.a), 0);
  pthread_mutex_lock(&w.lock);
  while (!w.done) pthread_cond_wait(&w.cond, &w.lock);
  pthread_mutex_unlock(&w.lock);
  MW_CHECK_INT(w.a.res.rc, MW_SH_BACKEND);
  MW_CHECK_STR(w.a.buf.p, "redis: connection refused");
  free(w.a.buf.p);
  pthread_cond_destroy(&w.cond);
  pthread_mutex_destroy(&w.lock);
  /* flush_expired needs no round trip */
  mw_shreq fe = {.op = MW_SHOP_FLUSH_EXPIRED};
  MW_CHECK_INT(mw_redis_backend.exec(r, &fe, &res, &buf), MW_SH_OK);
  MW_CHECK_INT(res.n, 0);
  free(buf.p);
  mw_redis_free(r);
  MW_CHECK(mw_redis_new("redis://h:99999", "t:", 1000, err, sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "bad port");
}

int main(void) {
  MW_RUN(test_urls);
  MW_RUN(test_redis_not_there);
  return mw_test_done();
}
