/* The server's own metrics on the registry: go-grpc-prometheus's names and
 * labels (grpc_server_started_total, grpc_server_handled_total,
 * grpc_server_msg_received_total, grpc_server_msg_sent_total,
 * grpc_server_handling_seconds), so that existing dashboards work, and the
 * moonwire_* counters that workers move (shed calls, handler CPU stops,
 * calls to unknown methods). docs/metrics.md lists them all.
 *
 * Series are keyed by the method's path and kind, not by a generation's
 * method record, so they survive reloads. Calls to methods the current
 * generation does not serve get no series of their own (any path would
 * make one: unbounded); they count in moonwire_unknown_method_calls_total.
 *
 * The entry points run on worker threads, on the hot path; every one is
 * meant to be called only when mw_metrics_current() is not NULL. */
#ifndef MW_GRPC_METRICS_H
#define MW_GRPC_METRICS_H

#include <stddef.h>

#include "metrics/mw_metrics.h"

/* A method's series (one per path and kind), shared by the workers. */
typedef struct mw_grpc_series mw_grpc_series;

/* Declares the families on r (once per registry). 0, or -1 with err. */
int mw_grpc_metrics_declare(mw_metrics *r, char *err, size_t errlen);
/* Forgets the families and series of the registry being freed. */
void mw_grpc_metrics_forget(void);

/* The series of "/pkg.Service/Method" of kind (0 unary, 1 server
 * streaming, 2 client streaming, 3 bidi: schema/mw_methods.h's order);
 * looked up in a per-thread cache first. NULL when out of memory or over
 * the cap. */
mw_grpc_series *mw_grpc_series_for(const char *path, size_t len, int kind);
/* A call of s arrived. */
void mw_grpc_started(mw_grpc_series *s);
/* A call of s ended with status code after secs seconds, having handed
 * msgs_in request messages to its handler and queued msgs_out responses. */
void mw_grpc_handled(mw_grpc_series *s, int code, double secs, unsigned long msgs_in,
                     unsigned long msgs_out);

/* The moonwire_* counters of single events. */
void mw_grpc_count_shed(void);
void mw_grpc_count_unknown(void);
void mw_grpc_count_cpu_stop(void);

/* A status code in Go's spelling ("OK", "Canceled", ..., "Unauthenticated");
 * "Unknown" past the range. */
const char *mw_grpc_code_name(int code);

#endif
