/* The in-process room (sessions/mw_sessions.h's memory backend): topics in
 * a hash table keyed by SipHash with a random key, each with its
 * subscribers, its last offset, a random epoch made with the topic, and a
 * ring of its recent publications bounded by count and age; a bounded
 * queue per subscriber; one lock per room. A topic is dropped when its
 * last subscriber leaves and its history is empty: made again, it has a
 * new epoch, so no client resumes across the gap. */
#ifndef MW_SESMEM_H
#define MW_SESMEM_H

#include "sessions/mw_sessions.h"

extern const mw_sess_backend mw_sesmem_backend;

/* A room for spec (its numbers; the strings are not kept). NULL on OOM. */
void *mw_sesmem_new(const mw_sess_spec *spec);

#endif
