/* The in-process shared dict: the "memory" backend of shared/mw_shared.h,
 * with ngx.shared.DICT's semantics (docs/lua-api.md, "Shared dicts").
 *
 * Memory: a byte budget over malloc. Every entry is one malloc'd block
 * (header, key, string value) and every list element another; each is
 * charged its bytes plus MW_SHDICT_BLOCK_OVERHEAD for malloc's own
 * bookkeeping, and the hash table's buckets are charged from the start.
 * The charges never pass `size`: a write that would is refused (safe_
 * forms, list pushes) or makes room by evicting the entries used least
 * recently (set, add, replace, incr), as OpenResty's slab allocator does.
 * A slab of our own was weighed: it would make `size` exact in resident
 * memory, at the price of a size-class allocator and its fragmentation
 * within the dict (OpenResty's "free_space() == 0 does not mean full");
 * malloc already keeps size classes, and with the budget the bound holds
 * to malloc's fragmentation, which the overhead charge approximates.
 *
 * Locking: one mutex per dict, held for the whole of each operation, so
 * each is atomic. Striping by key hash was weighed and refused: the LRU
 * order and the byte budget are properties of the whole dict, so stripes
 * would each need their own list and their own share of the budget, and
 * eviction would then take the least recent entry of one stripe (not of
 * the dict) and a full stripe would evict while others have room. An
 * operation holds the lock for a hash probe, a few pointer moves and a
 * copy of its value (tens of nanoseconds for small values), so one lock
 * serves several workers; dicts are independent, and a hot dict can be
 * split into several by the application. The mutex is adaptive (it spins
 * briefly before sleeping), which suits critical sections this short.
 *
 * Time: expiry times are milliseconds on CLOCK_MONOTONIC (or a clock a
 * test injects). Expired entries stay until they are reused, evicted, or
 * freed by flush_expired or by the sweep each write does (at most two
 * expired entries at the tail of the LRU list, as OpenResty): get_stale
 * can still read them. */
#ifndef MW_SHDICT_H
#define MW_SHDICT_H

#include <stddef.h>
#include <stdint.h>

#include "shared/mw_shared.h"

/* What each malloc'd block is charged beyond its own bytes. */
#define MW_SHDICT_BLOCK_OVERHEAD 16

typedef struct mw_shdict mw_shdict;

/* A dict of size bytes (>= MW_SHARED_MIN_SIZE); the caller owns it. NULL
 * when out of memory or size is too small. */
mw_shdict *mw_shdict_new(size_t size);
/* Frees d and everything in it; NULL is ignored. */
void mw_shdict_free(mw_shdict *d);

/* Runs one operation: see mw_shared.h. */
mw_shrc mw_shdict_exec(mw_shdict *d, const mw_shreq *req, mw_shres *res, mw_shbuf *buf);

/* Replaces the clock (milliseconds, >= 1, never going back) for tests;
 * NULL restores CLOCK_MONOTONIC. Set it before any thread uses d. */
void mw_shdict_set_clock(mw_shdict *d, int64_t (*now_ms)(void *ud), void *ud);

/* Entries held (expired ones included), and bytes charged: for tests. */
size_t mw_shdict_count(mw_shdict *d);
size_t mw_shdict_used(mw_shdict *d);

/* The backend table over mw_shdict (self is a mw_shdict *). */
extern const mw_shared_backend mw_shdict_backend;

#endif
