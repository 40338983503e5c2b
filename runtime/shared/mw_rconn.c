/* The Redis connection's I/O thread: see mw_rconn.h. hiredis's async
 * context does the protocol; this file is its event loop (an adapter of
 * four flag setters and a poll over the socket and an eventfd that
 * submitters ring) and the reconnect policy. */
#include "shared/mw_rconn.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "base/mw_log.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000

enum { ST_DOWN, ST_CONNECTING, ST_UP };

struct mw_rconn {
  mw_rconn_addr addr;
  int64_t connect_timeout_ms;
  pthread_t thread;
  int wakefd;
  pthread_mutex_t lock; /* guards the queue and stop */
  mw_rcmd *head, *tail; /* submitted, not handed to hiredis yet */
  int rung;             /* the eventfd was written since the last drain */
  int stop;
  _Atomic int up;
  /* The I/O thread's alone: */
  redisAsyncContext *ac; /* NULL while down */
  int state;
  int want_read, want_write;
  int64_t next_try_ms, connect_started_ms, backoff_ms;
  /* Commands sent and not answered, and when the connection last showed
   * progress (a reply, or the first command after none was pending): a
   * connection with commands pending and no reply for STALL_FACTOR times
   * the timeout is dropped and made again, so a Redis that stopped
   * answering (a half-open connection, a stopped process) does not pile
   * up commands without end. */
  size_t inflight;
  int64_t progress_ms;
  int logged_down; /* the loss was logged; the next connect is */
  void (*on_up)(mw_rconn *conn, void *arg); /* a subscriber's (mw_rconn_new_sub) */
  void *on_up_arg;
  char err[160]; /* why the connection is down, as hiredis says it */
};

#define STALL_FACTOR 3

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* hiredis's messages start with a capital ("Connection refused"); ours
 * read "redis: connection refused". */
static void set_err(mw_rconn *c, const char *why) {
  snprintf(c->err, sizeof c->err, "%s", why && *why ? why : "connection lost");
  c->err[0] = (char)tolower((unsigned char)c->err[0]);
}

int mw_rconn_parse_url(const char *url, mw_rconn_addr *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->port = 6379;
  if (strncmp(url, "redis://", 8) != 0) {
    snprintf(err, errlen, "'%s' is not a redis:// URL (redis://HOST:PORT/DB)", url);
    return -1;
  }
  const char *p = url + 8;
  const char *at = strchr(p, '@');
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *pw = colon ? colon + 1 : p;
    size_t n = (size_t)(at - pw);
    if (n >= sizeof out->password) {
      snprintf(err, errlen, "the password of '%s' is too long", url);
      return -1;
    }
    memcpy(out->password, pw, n);
    p = at + 1;
  }
  size_t hl = strcspn(p, ":/");
  if (hl == 0 || hl >= sizeof out->host) {
    snprintf(err, errlen, "'%s' names no host (redis://HOST:PORT/DB)", url);
    return -1;
  }
  for (size_t i = 0; i < hl; i++) {
    unsigned char ch = (unsigned char)p[i];
    if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_') {
      snprintf(err, errlen, "'%s' has a bad host name (redis://HOST:PORT/DB)", url);
      return -1;
    }
  }
  memcpy(out->host, p, hl);
  p += hl;
  if (*p == ':') {
    char *end;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
      snprintf(err, errlen, "'%s' has a bad port (1 to 65535)", url);
      return -1;
    }
    out->port = (int)port;
    p = end;
  }
  if (*p == '/' && p[1]) {
    char *end;
    long db = strtol(p + 1, &end, 10);
    if (end == p + 1 || *end || db < 0 || db > 1000000) {
      snprintf(err, errlen, "'%s' has a bad database number (/0, /1...)", url);
      return -1;
    }
    out->db = (int)db;
  } else if (*p && strcmp(p, "/") != 0) {
    snprintf(err, errlen, "'%s' is not redis://HOST:PORT/DB", url);
    return -1;
  }
  return 0;
}

/* --- the adapter: hiredis says what it wants to wait for ------------------ */

static void ev_add_read(void *p) { ((mw_rconn *)p)->want_read = 1; }
static void ev_del_read(void *p) { ((mw_rconn *)p)->want_read = 0; }
static void ev_add_write(void *p) { ((mw_rconn *)p)->want_write = 1; }
static void ev_del_write(void *p) { ((mw_rconn *)p)->want_write = 0; }
static void ev_cleanup(void *p) {
  mw_rconn *c = p;
  c->want_read = c->want_write = 0;
}

/* --- connection state ------------------------------------------------------ */

static void went_down(mw_rconn *c, const char *why) {
  set_err(c, why);
  /* One line per change, not one per attempt: the first failure after
   * being up (or at start), then the next success. */
  if ((c->state == ST_UP || !c->logged_down) && !c->stop) {
    mw_log(MW_LOG_WARN, "redis %s:%d: %s%s", c->addr.host, c->addr.port, c->err,
           c->state == ST_UP ? "; reconnecting" : "; retrying");
    c->logged_down = 1;
  }
  c->inflight = 0; /* hiredis answers each of them as it lets go */
  c->ac = NULL;
  c->state = ST_DOWN;
  atomic_store(&c->up, 0);
  c->want_read = c->want_write = 0;
  c->next_try_ms = now_ms() + c->backoff_ms;
  c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void on_connect(const redisAsyncContext *ac, int status) {
  mw_rconn *c = ac->data;
  if (status != REDIS_OK) {
    /* hiredis frees the context after this returns */
    went_down(c, ac->errstr);
    return;
  }
  if (c->logged_down) mw_log(MW_LOG_INFO, "redis %s:%d: connected", c->addr.host, c->addr.port);
  c->logged_down = 0;
  c->state = ST_UP;
  atomic_store(&c->up, 1);
  c->backoff_ms = BACKOFF_MIN_MS;
  if (c->on_up) c->on_up(c, c->on_up_arg);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  mw_rconn *c = ac->data;
  if (c->ac == ac) went_down(c, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static const char *reason(mw_rconn *c, redisAsyncContext *ac) {
  if (c->stop) return "shutting down";
  if (ac && ac->err && ac->errstr[0]) {
    set_err(c, ac->errstr);
    return c->err;
  }
  return c->err[0] ? c->err : "connection lost";
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv) {
  mw_rconn *c = ac->data;
  mw_rcmd *cmd = priv;
  if (r) {
    if (c->inflight) c->inflight--;
    c->progress_ms = now_ms();
  }
  if (r) cmd->on_reply(cmd, r, NULL);
  else cmd->on_reply(cmd, NULL, reason(c, ac));
}

/* AUTH and SELECT, first on every connection: a failure closes it, so that
 * no command runs as the wrong user or in the wrong database. */
static void on_setup(redisAsyncContext *ac, void *r, void *priv) {
  redisReply *rep = r;
  mw_rconn *c = ac->data;
  if (rep && rep->type == REDIS_REPLY_ERROR) {
    set_err(c, rep->str);
    redisAsyncDisconnect(ac);
  }
}

static void start_connect(mw_rconn *c) {
  redisAsyncContext *ac = redisAsyncConnect(c->addr.host, c->addr.port);
  if (!ac) {
    went_down(c, "out of memory");
    return;
  }
  if (ac->err) {
    char why[160];
    snprintf(why, sizeof why, "%s", ac->errstr);
    redisAsyncFree(ac);
    went_down(c, why);
    return;
  }
  ac->data = c;
  ac->ev.data = c;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  c->ac = ac;
  c->state = ST_CONNECTING;
  c->connect_started_ms = now_ms();
  c->want_read = 0;
  c->want_write = 1; /* the connect completes when the socket is writable */
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  if (c->addr.password[0]) redisAsyncCommand(ac, on_setup, NULL, "AUTH %s", c->addr.password);
  if (c->addr.db) redisAsyncCommand(ac, on_setup, NULL, "SELECT %d", c->addr.db);
}

/* Drops the context from the loop (never from inside a callback): every
 * command it holds is answered with why. */
static void drop(mw_rconn *c, const char *why) {
  redisAsyncContext *ac = c->ac;
  if (!ac) return;
  int was_up = c->state == ST_UP;
  went_down(c, why);
  if (was_up) ac->onDisconnect = NULL; /* went_down said it all */
  redisAsyncFree(ac);
}

static void send_cmd(mw_rconn *c, mw_rcmd *cmd) {
  if (c->stop || !c->ac) {
    cmd->on_reply(cmd, NULL, c->stop ? "shutting down" : c->err);
    return;
  }
  if (redisAsyncFormattedCommand(c->ac, on_reply, cmd, cmd->cmd, cmd->len) != REDIS_OK) {
    cmd->on_reply(cmd, NULL, reason(c, c->ac));
    return;
  }
  if (c->inflight++ == 0) c->progress_ms = now_ms();
}

void mw_rconn_resend(mw_rconn *c, mw_rcmd *cmd) { send_cmd(c, cmd); }

static void drain(mw_rconn *c) {
  pthread_mutex_lock(&c->lock);
  mw_rcmd *q = c->head;
  c->head = c->tail = NULL;
  c->rung = 0;
  pthread_mutex_unlock(&c->lock);
  while (q) {
    mw_rcmd *next = q->next;
    q->next = NULL;
    send_cmd(c, q);
    q = next;
  }
}

static void *io_main(void *arg) {
  mw_rconn *c = arg;
  for (;;) {
    pthread_mutex_lock(&c->lock);
    int stop = c->stop;
    pthread_mutex_unlock(&c->lock);
    if (stop) break;
    int64_t now = now_ms();
    if (!c->ac && now >= c->next_try_ms) start_connect(c);
    if (c->ac && c->state == ST_CONNECTING &&
        now - c->connect_started_ms >= c->connect_timeout_ms)
      drop(c, "connect timeout");
    int64_t stall = STALL_FACTOR * c->connect_timeout_ms;
    if (c->ac && c->state == ST_UP && c->inflight && now - c->progress_ms >= stall)
      drop(c, "no reply in time: connection dropped");
    drain(c);
    struct pollfd pf[2] = {{.fd = c->wakefd, .events = POLLIN}};
    int n = 1;
    if (c->ac && (c->want_read || c->want_write)) {
      pf[1].fd = c->ac->c.fd;
      pf[1].events = (short)((c->want_read ? POLLIN : 0) | (c->want_write ? POLLOUT : 0));
      n = 2;
    }
    int timeout = -1;
    if (!c->ac) timeout = (int)(c->next_try_ms > now ? c->next_try_ms - now : 0);
    else if (c->state == ST_CONNECTING)
      timeout = (int)(c->connect_started_ms + c->connect_timeout_ms - now);
    else if (c->inflight)
      timeout = (int)(c->progress_ms + stall - now);
    if (timeout < -1) timeout = 0;
    if (poll(pf, (nfds_t)n, timeout) < 0 && errno != EINTR) break;
    if (pf[0].revents & POLLIN) {
      uint64_t v;
      if (read(c->wakefd, &v, sizeof v) < 0) {
        /* EAGAIN: another turn read it already */
      }
    }
    if (n == 2 && c->ac) {
      if (pf[1].revents & (POLLIN | POLLERR | POLLHUP)) redisAsyncHandleRead(c->ac);
      if (c->ac && (pf[1].revents & (POLLOUT | POLLERR))) redisAsyncHandleWrite(c->ac);
    }
  }
  /* Stopping: what hiredis holds and what is queued are answered. */
  drop(c, "shutting down");
  drain(c);
  return NULL;
}

mw_rconn *mw_rconn_new(const mw_rconn_addr *addr, int64_t connect_timeout_ms, char *err,
                       size_t errlen) {
  return mw_rconn_new_sub(addr, connect_timeout_ms, NULL, NULL, err, errlen);
}

mw_rconn *mw_rconn_new_sub(const mw_rconn_addr *addr, int64_t connect_timeout_ms,
                           void (*on_up)(mw_rconn *conn, void *arg), void *arg, char *err,
                           size_t errlen) {
  mw_rconn *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->addr = *addr;
  c->on_up = on_up; /* set before the thread starts: it reads it unlocked */
  c->on_up_arg = arg;
  c->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : 1000;
  c->backoff_ms = BACKOFF_MIN_MS;
  snprintf(c->err, sizeof c->err, "not connected yet");
  pthread_mutex_init(&c->lock, NULL);
  c->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (c->wakefd < 0) {
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    pthread_mutex_destroy(&c->lock);
    free(c);
    return NULL;
  }
  int rc = pthread_create(&c->thread, NULL, io_main, c);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the redis thread: %s", strerror(rc));
    close(c->wakefd);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return NULL;
  }
  return c;
}

static void ring(mw_rconn *c) {
  uint64_t one = 1;
  if (write(c->wakefd, &one, sizeof one) < 0) {
    /* EAGAIN: the counter is full, so the thread is woken anyway */
  }
}

void mw_rconn_submit(mw_rconn *c, mw_rcmd *cmd) {
  cmd->next = NULL;
  pthread_mutex_lock(&c->lock);
  if (c->tail) c->tail->next = cmd;
  else c->head = cmd;
  c->tail = cmd;
  /* One ring per batch: later submitters find it rung and only queue. */
  int must_ring = !c->rung;
  c->rung = 1;
  pthread_mutex_unlock(&c->lock);
  if (must_ring) ring(c);
}

int mw_rconn_up(mw_rconn *c) { return atomic_load(&c->up); }

void mw_rconn_free(mw_rconn *c) {
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  c->stop = 1;
  pthread_mutex_unlock(&c->lock);
  ring(c);
  pthread_join(c->thread, NULL);
  close(c->wakefd);
  pthread_mutex_destroy(&c->lock);
  free(c);
}
