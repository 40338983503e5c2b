/* A room on Redis without a Redis (sessions/mw_sesredis.h) and the local
 * delivery under it (sessions/mw_sesmem.h's join_pending, join_done,
 * deliver): a join's history and the live publications held meanwhile
 * meet without a gap or a duplicate, a publication seen twice is taken
 * once, another epoch ends the stream; with no Redis, publish and history
 * fail at once with the connection's reason and a join still joins; a bad
 * URL is refused with its reason. The suite against a real redis-server
 * is tests/e2e/test_sessions_redis.py. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/mw_status.h"
#include "mw_test.h"
#include "sessions/mw_sesmem.h"
#include "sessions/mw_sesredis.h"

static const mw_sess_backend *M = &mw_sesmem_backend;

static mw_sess_pub *pub(uint64_t offset) {
  mw_sess_pub *p = malloc(sizeof *p + 8);
  atomic_init(&p->refs, 1);
  p->offset = offset;
  p->at = 0;
  p->len = (size_t)snprintf(p->data, 8, "%llu", (unsigned long long)offset);
  return p;
}

static void deliver(void *r, const char *epoch, uint64_t offset) {
  mw_sess_pub *p = pub(offset);
  mw_sesmem_deliver(r, "t", 1, epoch, p);
  mw_sess_pub_unref(p);
}

/* The offsets s has queued, in order, into out; how many. */
static size_t drain(void *r, mw_sess_sub *s, uint64_t *out, size_t max, mw_sess_end *end,
                    int *ended) {
  size_t n = 0;
  mw_sess_pub *p;
  int freed, rc;
  *ended = 0;
  while ((rc = M->take(r, s, &p, end, &freed)) != 0) {
    if (rc < 0) {
      *ended = 1;
      break;
    }
    if (n < max) out[n++] = p->offset;
    mw_sess_pub_unref(p);
  }
  return n;
}

static void test_join_meets_live(void) {
  mw_sess_spec spec = {.name = "t", .message = "t.M", .buffer = 100, .policy = MW_SESS_CLOSE};
  void *r = mw_sesmem_new(&spec);
  mw_sess_join j = {.topic = "t", .tlen = 1, .worker = -1, .owner = (void *)1};
  mw_sess_sub *s = NULL;
  MW_CHECK_INT(mw_sesmem_join_pending(r, &j, &s), MW_SESS_OK);
  /* while the join reads Redis (top 5 there), 5 and 6 arrive live */
  deliver(r, "e1", 5);
  deliver(r, "e1", 6);
  uint64_t got[16];
  mw_sess_end end;
  int ended;
  MW_CHECK_INT((int)drain(r, s, got, 16, &end, &ended), 0); /* held, not sent */
  mw_sess_pub *hist[3] = {pub(3), pub(4), pub(5)};
  mw_sesmem_join_done(r, s, hist, 3, 5, "e1");
  for (int i = 0; i < 3; i++) mw_sess_pub_unref(hist[i]);
  deliver(r, "e1", 6); /* late twice: dropped */
  deliver(r, "e1", 7);
  size_t n = drain(r, s, got, 16, &end, &ended);
  MW_CHECK_INT((int)n, 5);
  for (size_t i = 0; i < n && i < 5; i++) MW_CHECK_INT((int)got[i], (int)(3 + i));
  MW_CHECK_INT(ended, 0);
  /* another epoch: the topic was made again, the stream ends */
  deliver(r, "e2", 1);
  MW_CHECK_INT((int)drain(r, s, got, 16, &end, &ended), 0);
  MW_CHECK_INT(ended, 1);
  MW_CHECK_INT(end.code, MW_STATUS_ABORTED);
  MW_CHECK_CONTAINS(end.msg, "new epoch");
  M->leave(r, s);
  mw_sess_sub_unref(s);
  M->free(r);
}

static void test_epoch_learned_later(void) {
  /* joined while Redis was down: the first publication tells the epoch */
  mw_sess_spec spec = {.name = "t", .message = "t.M", .buffer = 100, .policy = MW_SESS_CLOSE};
  void *r = mw_sesmem_new(&spec);
  mw_sess_join j = {.topic = "t", .tlen = 1, .worker = -1, .owner = (void *)1};
  mw_sess_sub *s = NULL;
  MW_CHECK_INT(mw_sesmem_join_pending(r, &j, &s), MW_SESS_OK);
  mw_sesmem_join_done(r, s, NULL, 0, 0, "");
  deliver(r, "e1", 9);
  deliver(r, "e1", 10);
  uint64_t got[4];
  mw_sess_end end;
  int ended;
  MW_CHECK_INT((int)drain(r, s, got, 4, &end, &ended), 2);
  MW_CHECK_INT((int)got[0], 9);
  deliver(r, "e2", 1);
  drain(r, s, got, 4, &end, &ended);
  MW_CHECK_INT(ended, 1);
  M->leave(r, s);
  mw_sess_sub_unref(s);
  M->free(r);
}

static void test_full_queue_under_block_ends_the_stream(void) {
  mw_sess_spec spec = {.name = "t", .message = "t.M", .buffer = 2, .policy = MW_SESS_BLOCK};
  void *r = mw_sesmem_new(&spec);
  mw_sess_join j = {.topic = "t", .tlen = 1, .worker = -1, .owner = (void *)1};
  mw_sess_sub *s = NULL;
  MW_CHECK_INT(mw_sesmem_join_pending(r, &j, &s), MW_SESS_OK);
  mw_sesmem_join_done(r, s, NULL, 0, 0, "e");
  for (uint64_t o = 1; o <= 3; o++) deliver(r, "e", o);
  uint64_t got[4];
  mw_sess_end end;
  int ended;
  drain(r, s, got, 4, &end, &ended);
  MW_CHECK_INT(ended, 1);
  MW_CHECK_INT(end.code, MW_STATUS_RESOURCE_EXHAUSTED);
  M->leave(r, s);
  mw_sess_sub_unref(s);
  M->free(r);
}

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

static void test_redis_not_there(void) {
  char url[64], err[256];
  snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", closed_port());
  mw_sess_spec spec = {.name = "t", .message = "t.M", .history_size = 10, .buffer = 10,
                       .redis = url, .timeout_ms = 2000};
  void *r = mw_sesredis_new(&spec, err, sizeof err);
  MW_CHECK(r != NULL);
  if (!r) return;
  const mw_sess_backend *B = &mw_sesredis_backend;
  struct timespec ts = {0, 100000000};
  nanosleep(&ts, NULL); /* the first connect attempt has failed by now */
  uint64_t off = 0;
  double t0 = now_s();
  MW_CHECK_INT(B->publish(r, "t", 1, "x", 1, 1, &off), MW_SESS_BACKEND);
  MW_CHECK(now_s() - t0 < 1.0); /* at once, not after the timeout */
  MW_CHECK_CONTAINS(mw_sess_error(), "redis: ");
  MW_CHECK_CONTAINS(mw_sess_error(), "refused");
  mw_sess_pub *out[4];
  size_t n = 9;
  uint64_t top;
  char epoch[MW_SESS_EPOCH_LEN];
  MW_CHECK_INT(B->history(r, "t", 1, 0, out, 4, &n, &top, epoch), MW_SESS_BACKEND);
  MW_CHECK_INT((int)n, 0);
  /* a join still joins, knowing no epoch: its resume is not recovered */
  mw_sess_join j = {.topic = "t", .tlen = 1, .worker = -1, .owner = (void *)1, .resume = 1,
                    .offset = 3, .epoch = "0123456789abcdef"};
  mw_sess_sub *s = NULL;
  MW_CHECK_INT(B->join(r, &j, &s), MW_SESS_OK);
  MW_CHECK_STR(j.epoch_now, "");
  MW_CHECK_INT(j.recovered, 0);
  uint64_t ids[2];
  MW_CHECK_INT((int)B->list(r, "t", 1, ids, 2), 1);
  B->leave(r, s);
  mw_sess_sub_unref(s);
  B->free(r);
}

static void test_bad_url(void) {
  char err[256];
  mw_sess_spec spec = {.name = "t", .message = "t.M", .buffer = 1, .redis = "redis://h:0"};
  MW_CHECK(mw_sesredis_new(&spec, err, sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "bad port");
}

int main(void) {
  MW_RUN(test_join_meets_live);
  MW_RUN(test_epoch_learned_later);
  MW_RUN(test_full_queue_under_block_ends_the_stream);
  MW_RUN(test_redis_not_there);
  MW_RUN(test_bad_url);
  return mw_test_done();
}
