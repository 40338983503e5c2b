/* The in-process room (sessions/mw_sesmem.h) and the ready lists
 * (sessions/mw_sessions.h), with no server: offsets, fan-out in order,
 * each policy on a full queue, resume with and without history (size,
 * TTL, epoch), the offset stamp, send/close/list, and publishers on
 * several threads reaching subscribers of several "workers" exactly once
 * and in order. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mw_status.h"
#include "mw_test.h"
#include "sessions/mw_sesmem.h"

static const mw_sess_backend *B = &mw_sesmem_backend;

static void *room(size_t hist, int64_t ttl_ms, size_t buffer, mw_sess_policy p) {
  mw_sess_spec s = {.name = "t", .message = "t.M", .history_size = hist,
                    .history_ttl_ms = ttl_ms, .buffer = buffer, .policy = p};
  return mw_sesmem_new(&s);
}

static mw_sess_sub *join(void *r, const char *topic, int worker, mw_sess_join *j) {
  mw_sess_join local = {0};
  if (!j) j = &local;
  j->topic = topic;
  j->tlen = strlen(topic);
  j->worker = worker;
  j->owner = (void *)1;
  mw_sess_sub *s = NULL;
  MW_CHECK_INT(B->join(r, j, &s), MW_SESS_OK);
  return s;
}

static uint64_t pub(void *r, const char *topic, const char *text) {
  uint64_t off = 0;
  MW_CHECK_INT(B->publish(r, topic, strlen(topic), text, strlen(text), 0, &off), MW_SESS_OK);
  return off;
}

/* The next queued publication's text ("" when none), offset in *off. */
static const char *next(void *r, mw_sess_sub *s, uint64_t *off, int *ended) {
  static char buf[256];
  mw_sess_pub *p = NULL;
  mw_sess_end end;
  int freed;
  int rc = B->take(r, s, &p, &end, &freed);
  if (ended) *ended = rc < 0 ? end.code : -1;
  if (rc <= 0) return "";
  snprintf(buf, sizeof buf, "%.*s", (int)p->len, p->data);
  if (off) *off = p->offset;
  mw_sess_pub_unref(p);
  return buf;
}

static void done(void *r, mw_sess_sub *s) {
  B->leave(r, s);
  mw_sess_sub_unref(s);
}

/* Drops what the ready lists hold (no worker drains them here). */
static size_t drain_ready(int w) {
  size_t n = 0;
  mw_sess_sub *s = mw_sess_ready_take(w), *nx;
  for (; s; s = nx) {
    nx = s->ready_next;
    mw_sess_ready_unlist(s);
    mw_sess_sub_unref(s);
    n++;
  }
  return n;
}

static void test_fanout_in_order(void) {
  void *r = room(0, 0, 64, MW_SESS_BLOCK);
  mw_sess_join j = {0};
  mw_sess_sub *a = join(r, "news", 0, &j), *b = join(r, "news", 1, NULL),
              *other = join(r, "sport", 1, NULL);
  MW_CHECK_INT(j.top, 0);
  MW_CHECK_INT(strlen(j.epoch_now), 16);
  MW_CHECK_INT(pub(r, "news", "one"), 1);
  MW_CHECK_INT(pub(r, "news", "two"), 2);
  MW_CHECK_INT(pub(r, "sport", "goal"), 1); /* offsets are per topic */
  uint64_t off = 0;
  MW_CHECK_STR(next(r, a, &off, NULL), "one");
  MW_CHECK_INT(off, 1);
  MW_CHECK_STR(next(r, a, &off, NULL), "two");
  MW_CHECK_INT(off, 2);
  MW_CHECK_STR(next(r, a, NULL, NULL), "");
  MW_CHECK_STR(next(r, b, NULL, NULL), "one");
  MW_CHECK_STR(next(r, b, NULL, NULL), "two");
  MW_CHECK_STR(next(r, other, NULL, NULL), "goal");
  MW_CHECK_STR(next(r, other, NULL, NULL), "");
  /* each was listed once on its worker, however many it got */
  MW_CHECK_INT(drain_ready(0), 1);
  MW_CHECK_INT(drain_ready(1), 2);
  uint64_t ids[4];
  MW_CHECK_INT(B->list(r, "news", 4, ids, 4), 2);
  MW_CHECK_INT(ids[0], a->id); /* oldest join first */
  MW_CHECK_INT(ids[1], b->id);
  done(r, a);
  MW_CHECK_INT(B->list(r, "news", 4, ids, 4), 1);
  done(r, b);
  done(r, other);
  MW_CHECK_INT(B->list(r, "news", 4, ids, 4), 0);
  B->free(r);
}

static void test_block(void) {
  void *r = room(0, 0, 2, MW_SESS_BLOCK);
  mw_sess_sub *fast = join(r, "t", 0, NULL), *slow = join(r, "t", 0, NULL);
  pub(r, "t", "1");
  pub(r, "t", "2");
  MW_CHECK_STR(next(r, fast, NULL, NULL), "1");
  uint64_t off = 0;
  /* slow's queue is full: nothing is published, to anyone */
  MW_CHECK_INT(B->publish(r, "t", 1, "3", 1, 0, &off), MW_SESS_FULL);
  MW_CHECK_INT(B->send(r, slow->id, "x", 1), MW_SESS_FULL);
  MW_CHECK_STR(next(r, fast, NULL, NULL), "2");
  MW_CHECK_STR(next(r, fast, NULL, NULL), "");
  mw_sess_pub *p;
  mw_sess_end end;
  int freed = 0;
  MW_CHECK_INT(B->take(r, slow, &p, &end, &freed), 1);
  MW_CHECK_INT(freed, 1); /* room made in a full queue: publishers retry */
  mw_sess_pub_unref(p);
  MW_CHECK_INT(B->publish(r, "t", 1, "3", 1, 0, &off), MW_SESS_OK);
  MW_CHECK_INT(off, 3); /* the refused try took no offset */
  MW_CHECK_STR(next(r, slow, NULL, NULL), "2");
  MW_CHECK_STR(next(r, slow, NULL, NULL), "3");
  MW_CHECK_STR(next(r, fast, NULL, NULL), "3");
  done(r, fast);
  done(r, slow);
  drain_ready(0);
  B->free(r);
}

static void test_drop_oldest(void) {
  void *r = room(0, 0, 3, MW_SESS_DROP_OLDEST);
  mw_sess_sub *s = join(r, "t", 0, NULL);
  char t[8];
  for (int i = 1; i <= 10; i++) {
    snprintf(t, sizeof t, "%d", i);
    pub(r, "t", t);
  }
  uint64_t off;
  MW_CHECK_STR(next(r, s, &off, NULL), "8");
  MW_CHECK_INT(off, 8);
  MW_CHECK_STR(next(r, s, NULL, NULL), "9");
  MW_CHECK_STR(next(r, s, NULL, NULL), "10");
  MW_CHECK_STR(next(r, s, NULL, NULL), "");
  done(r, s);
  drain_ready(0);
  B->free(r);
}

static void test_close_policy_and_close(void) {
  void *r = room(0, 0, 2, MW_SESS_CLOSE);
  mw_sess_sub *slow = join(r, "t", 0, NULL), *ok = join(r, "t", 0, NULL);
  pub(r, "t", "1");
  pub(r, "t", "2");
  MW_CHECK_STR(next(r, ok, NULL, NULL), "1");
  MW_CHECK_STR(next(r, ok, NULL, NULL), "2");
  pub(r, "t", "3"); /* slow is over its buffer: it ends, ok goes on */
  int ended;
  MW_CHECK_STR(next(r, slow, NULL, &ended), "");
  MW_CHECK_INT(ended, MW_STATUS_RESOURCE_EXHAUSTED);
  MW_CHECK_STR(next(r, slow, NULL, &ended), "");
  MW_CHECK_INT(ended, -1); /* told once */
  MW_CHECK_STR(next(r, ok, NULL, NULL), "3");
  uint64_t ids[4];
  MW_CHECK_INT(B->list(r, "t", 1, ids, 4), 1);
  MW_CHECK_INT(B->send(r, slow->id, "x", 1), MW_SESS_NOT_FOUND);
  /* close: the session ends with the status given */
  MW_CHECK_INT(B->send(r, ok->id, "direct", 6), MW_SESS_OK);
  MW_CHECK_STR(next(r, ok, NULL, NULL), "direct");
  MW_CHECK_INT(B->close(r, ok->id, MW_STATUS_ABORTED, "bye"), MW_SESS_OK);
  mw_sess_pub *p;
  mw_sess_end end;
  int freed;
  MW_CHECK_INT(B->take(r, ok, &p, &end, &freed), -1);
  MW_CHECK_INT(end.code, MW_STATUS_ABORTED);
  MW_CHECK_STR(end.msg, "bye");
  MW_CHECK_INT(B->close(r, ok->id, 0, ""), MW_SESS_NOT_FOUND);
  done(r, slow); /* leave after the room ended them: harmless */
  done(r, ok);
  /* the last subscriber of a topic without history, ended by the publish
   * that walks the topic: the topic outlives the walk */
  mw_sess_sub *solo = join(r, "solo", 0, NULL);
  for (int i = 0; i < 3; i++) pub(r, "solo", "x");
  MW_CHECK_INT(B->list(r, "solo", 4, ids, 4), 0);
  MW_CHECK_INT(pub(r, "solo", "y"), 1); /* made again: offsets anew */
  done(r, solo);
  drain_ready(0);
  B->free(r);
}

static void test_resume(void) {
  void *r = room(5, 0, 64, MW_SESS_BLOCK);
  mw_sess_join j = {0};
  mw_sess_sub *keep = join(r, "t", 0, &j); /* keeps the topic (and its epoch) */
  char epoch[MW_SESS_EPOCH_LEN];
  memcpy(epoch, j.epoch_now, sizeof epoch);
  for (int i = 1; i <= 4; i++) pub(r, "t", i == 1 ? "a" : i == 2 ? "b" : i == 3 ? "c" : "d");
  /* the client saw offset 2: 3 and 4 are replayed, then live ones */
  mw_sess_join rj = {.resume = 1, .offset = 2, .epoch = epoch};
  mw_sess_sub *s = join(r, "t", 0, &rj);
  MW_CHECK_INT(rj.recovered, 1);
  MW_CHECK_INT(rj.replayed, 2);
  MW_CHECK_INT(rj.top, 4);
  pub(r, "t", "e");
  uint64_t off;
  MW_CHECK_STR(next(r, s, &off, NULL), "c");
  MW_CHECK_INT(off, 3);
  MW_CHECK_STR(next(r, s, NULL, NULL), "d");
  MW_CHECK_STR(next(r, s, &off, NULL), "e");
  MW_CHECK_INT(off, 5);
  done(r, s);
  /* up to date: recovered, nothing replayed */
  rj = (mw_sess_join){.resume = 1, .offset = 5, .epoch = epoch};
  s = join(r, "t", 0, &rj);
  MW_CHECK_INT(rj.recovered, 1);
  MW_CHECK_INT(rj.replayed, 0);
  done(r, s);
  /* another epoch: not recovered */
  rj = (mw_sess_join){.resume = 1, .offset = 2, .epoch = "0000000000000000"};
  s = join(r, "t", 0, &rj);
  MW_CHECK_INT(rj.recovered, 0);
  MW_CHECK_INT(rj.replayed, 0);
  MW_CHECK_STR(next(r, s, NULL, NULL), "");
  done(r, s);
  /* an offset from the future: not recovered */
  rj = (mw_sess_join){.resume = 1, .offset = 99, .epoch = epoch};
  s = join(r, "t", 0, &rj);
  MW_CHECK_INT(rj.recovered, 0);
  done(r, s);
  /* history pushed out (size 5 holds offsets 4..8 after three more) */
  pub(r, "t", "f");
  pub(r, "t", "g");
  pub(r, "t", "h");
  rj = (mw_sess_join){.resume = 1, .offset = 2, .epoch = epoch};
  s = join(r, "t", 0, &rj);
  MW_CHECK_INT(rj.recovered, 0);
  done(r, s);
  rj = (mw_sess_join){.resume = 1, .offset = 3, .epoch = epoch};
  s = join(r, "t", 0, &rj);
  MW_CHECK_INT(rj.recovered, 1);
  MW_CHECK_INT(rj.replayed, 5);
  MW_CHECK_STR(next(r, s, &off, NULL), "d");
  MW_CHECK_INT(off, 4);
  done(r, s);
  /* the history for a snapshot */
  mw_sess_pub *pubs[8];
  size_t n;
  uint64_t top;
  char ep[MW_SESS_EPOCH_LEN];
  MW_CHECK_INT(B->history(r, "t", 1, 6, pubs, 8, &n, &top, ep), MW_SESS_OK);
  MW_CHECK_INT(n, 2);
  MW_CHECK_INT(top, 8);
  MW_CHECK_STR(ep, epoch);
  MW_CHECK_INT(pubs[0]->offset, 7);
  for (size_t i = 0; i < n; i++) mw_sess_pub_unref(pubs[i]);
  done(r, keep);
  drain_ready(0);
  B->free(r);
}

static void test_resume_ttl_and_new_epoch(void) {
  void *r = room(10, 50, 64, MW_SESS_BLOCK);
  mw_sess_join j = {0};
  mw_sess_sub *s = join(r, "t", 0, &j);
  char epoch[MW_SESS_EPOCH_LEN];
  memcpy(epoch, j.epoch_now, sizeof epoch);
  pub(r, "t", "a");
  pub(r, "t", "b");
  done(r, s);
  /* within the TTL: recovered */
  mw_sess_join rj = {.resume = 1, .offset = 1, .epoch = epoch};
  s = join(r, "t", 0, &rj);
  MW_CHECK_INT(rj.recovered, 1);
  MW_CHECK_INT(rj.replayed, 1);
  done(r, s);
  struct timespec ts = {0, 120 * 1000 * 1000};
  nanosleep(&ts, NULL);
  /* past it, the history is gone: not recovered; the offsets go on */
  rj = (mw_sess_join){.resume = 1, .offset = 1, .epoch = epoch};
  s = join(r, "t", 0, &rj);
  MW_CHECK_INT(rj.recovered, 0);
  MW_CHECK_STR(rj.epoch_now, epoch);
  MW_CHECK_INT(rj.top, 2);
  done(r, s);
  /* with nothing left to resume from and nobody joined, the topic goes;
   * made again it has a new epoch, so an old client cannot resume into
   * offsets that mean other publications now */
  rj = (mw_sess_join){.resume = 1, .offset = 2, .epoch = epoch};
  s = join(r, "t", 0, &rj);
  MW_CHECK_INT(rj.recovered, 0);
  MW_CHECK(strcmp(rj.epoch_now, epoch) != 0);
  MW_CHECK_INT(rj.top, 0);
  done(r, s);
  drain_ready(0);
  B->free(r);
}

static void test_offset_stamp(void) {
  void *r = room(0, 0, 1, MW_SESS_DROP_OLDEST);
  mw_sess_sub *s = join(r, "t", 0, NULL);
  uint64_t off;
  for (int i = 0; i < 300; i++) B->publish(r, "t", 1, "\x0a\x01x", 3, 1, &off);
  /* field 1 as a varint after the bytes: tag 0x08, then the offset */
  MW_CHECK_INT(B->publish(r, "t", 1, "\x12\x01x", 3, 1, &off), MW_SESS_OK);
  mw_sess_pub *p;
  mw_sess_end end;
  int freed;
  MW_CHECK_INT(B->take(r, s, &p, &end, &freed), 1);
  MW_CHECK_INT(p->offset, off);
  MW_CHECK_INT(p->len, 3 + 1 + 2); /* 301 is a two-byte varint */
  MW_CHECK_INT((unsigned char)p->data[3], 0x08);
  MW_CHECK_INT((unsigned char)p->data[4], (301 & 0x7f) | 0x80);
  MW_CHECK_INT((unsigned char)p->data[5], 301 >> 7);
  mw_sess_pub_unref(p);
  done(r, s);
  drain_ready(0);
  B->free(r);
}

/* Four publisher threads, subscribers on three "workers", each drained by
 * a thread of its own: every subscriber sees every publication of every
 * publisher exactly once, each publisher's in its order, and offsets
 * strictly increasing. */
#define PUBS 4
#define PER 2000
#define SUBS 30
static void *g_room;
static mw_sess_sub *g_subs[SUBS];

static void *publisher(void *arg) {
  int who = (int)(intptr_t)arg;
  char t[32];
  for (int i = 0; i < PER; i++) {
    int len = snprintf(t, sizeof t, "%d:%d", who, i);
    uint64_t off;
    while (B->publish(g_room, "t", 1, t, (size_t)len, 0, &off) == MW_SESS_FULL) {
      struct timespec ts = {0, 20000};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

static void *consumer(void *arg) {
  int w = (int)(intptr_t)arg;
  int *seen = calloc(SUBS * PUBS, sizeof *seen);
  uint64_t *last = calloc(SUBS, sizeof *last);
  int bad = 0, total = 0;
  while (total < (SUBS / 3) * PUBS * PER) {
    for (int k = 0; k < SUBS; k++) {
      if (k % 3 != w) continue;
      mw_sess_pub *p;
      mw_sess_end end;
      int freed;
      while (B->take(g_room, g_subs[k], &p, &end, &freed) == 1) {
        int who, i;
        char t[32];
        snprintf(t, sizeof t, "%.*s", (int)p->len, p->data);
        if (sscanf(t, "%d:%d", &who, &i) != 2 || seen[k * PUBS + who] != i ||
            p->offset <= last[k])
          bad++;
        seen[k * PUBS + who] = i + 1;
        last[k] = p->offset;
        total++;
        mw_sess_pub_unref(p);
      }
    }
    drain_ready(w);
  }
  free(seen);
  free(last);
  return (void *)(intptr_t)bad;
}

static void test_threads(void) {
  g_room = room(100, 0, 16, MW_SESS_BLOCK);
  for (int k = 0; k < SUBS; k++) g_subs[k] = join(g_room, "t", k % 3, NULL);
  pthread_t p[PUBS], c[3];
  for (int w = 0; w < 3; w++) pthread_create(&c[w], NULL, consumer, (void *)(intptr_t)w);
  for (int i = 0; i < PUBS; i++) pthread_create(&p[i], NULL, publisher, (void *)(intptr_t)i);
  for (int i = 0; i < PUBS; i++) pthread_join(p[i], NULL);
  int bad = 0;
  for (int w = 0; w < 3; w++) {
    void *rv;
    pthread_join(c[w], &rv);
    bad += (int)(intptr_t)rv;
  }
  MW_CHECK_INT(bad, 0);
  uint64_t off;
  MW_CHECK_INT(B->publish(g_room, "t", 1, "z", 1, 0, &off), MW_SESS_OK);
  MW_CHECK_INT(off, PUBS * PER + 1);
  for (int k = 0; k < SUBS; k++) done(g_room, g_subs[k]);
  for (int w = 0; w < 3; w++) drain_ready(w);
  B->free(g_room);
}

/* The registry: rooms made once, kept over a reconfigure, with warnings. */
static void test_registry(void) {
  mw_sess_spec s[2] = {{.name = "chat", .message = "c.E", .buffer = 8},
                       {.name = "feed", .message = "f.E", .buffer = 8, .history_size = 3}};
  MW_CHECK_INT(mw_sessions_configure(s, 2, NULL, NULL), 0);
  const mw_sess_room *chat = mw_sessions_find("chat");
  MW_CHECK(chat != NULL);
  MW_CHECK_STR(chat->message, "c.E");
  char names[64];
  mw_sessions_names(names, sizeof names);
  MW_CHECK_STR(names, "chat, feed");
  mw_diag w = {0};
  s[0].buffer = 16;
  MW_CHECK_INT(mw_sessions_configure(s, 1, &w, NULL), 0);
  MW_CHECK(mw_sessions_find("chat") == chat); /* the same room, kept */
  MW_CHECK_INT(w.n, 2); /* chat's change, feed's absence */
  mw_diag_free(&w);
  MW_CHECK(mw_sessions_find("none") == NULL);
  mw_sessions_free();
  mw_sessions_free();
  MW_CHECK(mw_sessions_find("chat") == NULL);
}

int main(void) {
  MW_RUN(test_fanout_in_order);
  MW_RUN(test_block);
  MW_RUN(test_drop_oldest);
  MW_RUN(test_close_policy_and_close);
  MW_RUN(test_resume);
  MW_RUN(test_resume_ttl_and_new_epoch);
  MW_RUN(test_offset_stamp);
  MW_RUN(test_threads);
  MW_RUN(test_registry);
  return mw_test_done();
}
