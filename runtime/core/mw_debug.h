/* Introspection of the running server for the admin listener, gathered
 * the only safe way: a request posted to each worker's mailbox
 * (core/mw_post.h), answered by the worker from its own thread, and
 * waited for with a timeout. No other thread's structures are read.
 * Any thread may call these while a server runs (after mw_server_start,
 * before mw_server_free). */
#ifndef MW_DEBUG_H
#define MW_DEBUG_H

#include <stddef.h>

/* Every live call as a JSON document: {"calls":[{method, kind, age_s,
 * generation, worker, state, msgs_in, msgs_out, bytes_in, bytes_out,
 * cancelled, peer}...], "workers":[{"worker":i,"answered":bool}...]}.
 * Workers that do not answer within timeout_s are listed with answered
 * false (their calls are missing). Returns a malloc'd string (the
 * caller's), NULL when out of memory. Observation must be on (the admin
 * listener configured), or every list is empty. */
char *mw_debug_calls(double timeout_s, size_t *len);

#endif
