#define _GNU_SOURCE
#include "core/mw_conns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/sockios.h>

/* One connection in a sample. The socket's inode names it across samples:
 * a descriptor number may be reused by another connection in between. */
typedef struct conn {
  ino_t ino;
  int fd;
  uint64_t received;
  uint64_t queued; /* received, not yet read by core */
} conn;

struct mw_conns {
  int *ports;
  size_t n_ports;
  conn *prev; /* the last sample, sorted by inode (owned) */
  size_t n_prev;
};

mw_conns *mw_conns_new(const int *ports, size_t n_ports) {
  mw_conns *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->ports = calloc(n_ports ? n_ports : 1, sizeof *c->ports);
  if (!c->ports) {
    free(c);
    return NULL;
  }
  memcpy(c->ports, ports, n_ports * sizeof *ports);
  c->n_ports = n_ports;
  return c;
}

void mw_conns_free(mw_conns *c) {
  if (!c) return;
  free(c->ports);
  free(c->prev);
  free(c);
}

static int local_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

/* Whether fd is an accepted TCP connection on one of the ports; fills its
 * inode and bytes received. */
static int is_ours(const mw_conns *c, int fd, conn *out) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) != 0 || v != SOCK_STREAM) return 0;
  len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) != 0 || v) return 0;
  int port = local_port(fd);
  size_t i = 0;
  while (i < c->n_ports && c->ports[i] != port) i++;
  if (i == c->n_ports) return 0;
  struct tcp_info ti;
  len = sizeof ti;
  memset(&ti, 0, sizeof ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return 0;
  /* Only open ones: a connection cut before (or closed by its peer) is on
   * its way out, core reading its end-of-file; cutting it again frees
   * nothing. */
  if (ti.tcpi_state != 1 /* TCP_ESTABLISHED, <netinet/tcp.h> clashes with <linux/tcp.h> */) return 0;
  int inq = 0;
  if (ioctl(fd, SIOCINQ, &inq) != 0 || inq < 0) inq = 0;
  out->ino = st.st_ino;
  out->fd = fd;
  out->received = ti.tcpi_bytes_received;
  out->queued = (uint64_t)inq;
  return 1;
}

static int by_ino(const void *a, const void *b) {
  ino_t x = ((const conn *)a)->ino, y = ((const conn *)b)->ino;
  return x < y ? -1 : x > y;
}

/* The connections now, sorted by inode, into *out (malloc'd; the caller
 * owns it). Returns the count, or -1. */
static long take(const mw_conns *c, conn **out) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  size_t n = 0, cap = 16;
  conn *v = malloc(cap * sizeof *v);
  if (!v) {
    closedir(d);
    return -1;
  }
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d))) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    if (*end || end == e->d_name || fd == self) continue;
    conn one;
    if (!is_ours(c, (int)fd, &one)) continue;
    if (n == cap) {
      conn *bigger = realloc(v, 2 * cap * sizeof *v);
      if (!bigger) break; /* a partial census still finds the busiest so far */
      v = bigger;
      cap *= 2;
    }
    v[n++] = one;
  }
  closedir(d);
  qsort(v, n, sizeof *v, by_ino);
  *out = v;
  return (long)n;
}

static void keep(mw_conns *c, conn *v, size_t n) {
  free(c->prev);
  c->prev = v;
  c->n_prev = n;
}

long mw_conns_sample(mw_conns *c) {
  conn *v;
  long n = take(c, &v);
  if (n >= 0) keep(c, v, (size_t)n);
  return n;
}

static void peer_name(int fd, char *buf, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0, v6 = 0;
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
      port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      v6 = !IN6_IS_ADDR_V4MAPPED(&a->sin6_addr); /* a dual-stack socket's IPv4 peer */
      if (v6) inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
      else inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], host, sizeof host);
      port = ntohs(a->sin6_port);
    }
  }
  snprintf(buf, len, v6 ? "[%s]:%d" : "%s:%d", host, port);
}

/* What waits in a cut socket's receive queue would still be read by core
 * after shutdown(2) (Linux reads out the queue before end-of-file), and a
 * flood's queue holds MiB of streams for core to spend memory on: read it
 * out here and drop it. Core, reading beside us, sees a frame cut short or
 * end-of-file, and tears the connection down either way. What the peer
 * sends after the cut resets the connection (its data meets a socket shut
 * for reading), so this ends. */
static void discard_queued(int fd) {
  static char sink[65536];
  size_t total = 0;
  while (total < ((size_t)64 << 20)) {
    ssize_t got = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (got <= 0) break;
    total += (size_t)got;
  }
}

int mw_conns_cut_busiest(mw_conns *c, uint64_t min_bytes, mw_conn_cut *out) {
  conn *v;
  long n = take(c, &v);
  if (n < 0) return -1;
  size_t best = (size_t)n;
  uint64_t most = 0;
  for (size_t i = 0; i < (size_t)n; i++) {
    conn key = {.ino = v[i].ino};
    const conn *was = c->n_prev ? bsearch(&key, c->prev, c->n_prev, sizeof key, by_ino) : NULL;
    uint64_t got = was && was->received <= v[i].received ? v[i].received - was->received
                                                         : v[i].received;
    /* A flood that core cannot keep up with shows as a full receive queue
     * more than as recent reads: core reads it slowly, if at all. */
    got += v[i].queued;
    if (best == (size_t)n || got > most) {
      best = i;
      most = got;
    }
  }
  int cut = 0;
  /* A connection that received little lately costs little lately: the
   * calls of a client that merely talks are not what floods core. */
  if (best < (size_t)n && most > 0 && most >= min_bytes) {
    /* Core may have closed the descriptor since the census and the number
     * may name another file now: cut only the same socket. */
    conn again;
    if (is_ours(c, v[best].fd, &again) && again.ino == v[best].ino) {
      peer_name(v[best].fd, out->peer, sizeof out->peer);
      out->bytes = most;
      cut = shutdown(v[best].fd, SHUT_RDWR) == 0;
      if (cut) discard_queued(v[best].fd);
    }
  }
  keep(c, v, (size_t)n);
  return cut;
}
