/* The gRPC listeners' TCP connections, seen from beside gRPC core: the
 * memory guard's way to close the connection that costs the most when core
 * 1.51 spends memory on a connection's behalf that no setting bounds
 * (Rapid Reset, HPACK-bomb streams: docs/security.md).
 *
 * Core owns every accepted socket and offers no call to close one. The
 * census finds them in /proc/self/fd (TCP sockets whose local port is a
 * listener's), measures each by the bytes it has received (TCP_INFO) and
 * the bytes waiting in its receive queue that core has not read, and
 * cuts one with shutdown(2): core then reads end-of-file, tears the
 * transport down and frees its streams. The descriptor stays core's (it is
 * never closed here), so nothing of core's is freed twice. Linux only.
 *
 * Owned by the serve loop's thread; no other thread may use one. */
#ifndef MW_CONNS_H
#define MW_CONNS_H

#include <stddef.h>
#include <stdint.h>

typedef struct mw_conns mw_conns;

/* A census of the connections accepted on these local TCP ports. NULL when
 * out of memory. */
mw_conns *mw_conns_new(const int *ports, size_t n_ports);
/* Frees it; NULL is ignored. */
void mw_conns_free(mw_conns *c);

/* Takes a sample: every connection's bytes received so far. Returns how
 * many connections there are, or -1 when /proc/self/fd cannot be read. */
long mw_conns_sample(mw_conns *c);

/* What mw_conns_cut_busiest cut. */
typedef struct mw_conn_cut {
  char peer[64];   /* "1.2.3.4:5678" or "[::1]:5678" */
  uint64_t bytes;  /* received since the sample before (all, if it is new),
                      plus those waiting unread */
} mw_conn_cut;

/* Takes a sample and shuts down the connection that received the most
 * since the sample before (a connection new since then counts everything
 * it has received) plus what waits unread in its receive queue, when that
 * is at least min_bytes. Returns 1 with *out filled when one was cut, 0
 * when none received min_bytes, -1 when /proc/self/fd cannot be read. */
int mw_conns_cut_busiest(mw_conns *c, uint64_t min_bytes, mw_conn_cut *out);

#endif
