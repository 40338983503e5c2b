#ifndef MW_LALLOC_H
#define MW_LALLOC_H

/* The allocator of Moonwire's Lua states: accounting against a worker's
 * memory cap, and free lists of small blocks per state, so that the tables
 * and strings a call leaves behind come back to the next call without a
 * trip through malloc. */

#include <stddef.h>

/* A per-worker Lua memory account: every lua_State a worker runs, of any
 * generation, allocates through it, so the cap holds across reloads. */
typedef struct mw_lua_mem {
  _Atomic size_t used; /* bytes Lua holds (cached free blocks not counted) */
  size_t limit;        /* 0 = no cap */
} mw_lua_mem;

/* The freed small blocks one state keeps for reuse, in bytes. Garbage
 * comes back in bursts, at each of the collector's steps: with a 256 KiB
 * cap the bench's echo (make profile, 16 B unary) sent 18,000 of 60,000
 * small allocations a 20,000-call run to malloc, ~600 instructions a call
 * more than with 1 MiB, where 321 went (docs/performance.md). */
#define MW_LALLOC_CACHE_MAX (1024 * 1024)

/* One state's allocator (owned by whoever closes the state). */
typedef struct mw_lalloc mw_lalloc;

/* A new allocator charging mem (NULL: no account, no cap); NULL when out of
 * memory. */
mw_lalloc *mw_lalloc_new(mw_lua_mem *mem);

/* The lua_Alloc function; its ud is an mw_lalloc. Blocks up to 256 bytes
 * are rounded up to a multiple of 16 and kept for reuse when freed (at most
 * MW_LALLOC_CACHE_MAX per state); a request that would take the account past its limit
 * fails, so Lua raises "not enough memory" in the allocating state. */
void *mw_lalloc_fn(void *ud, void *ptr, size_t osize, size_t nsize);

/* Bytes held in the free lists. */
size_t mw_lalloc_cached(const mw_lalloc *a);

/* Frees the cached blocks and a itself; call after lua_close. NULL is
 * ignored. */
void mw_lalloc_free(mw_lalloc *a);

#endif
