/* SipHash-2-4 (Aumasson and Bernstein), a keyed 64-bit hash, for tables
 * whose keys come from clients: with a random key per table, a client
 * cannot pick keys that all land in one bucket or set. */
#ifndef MW_SIPHASH_H
#define MW_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* The hash of in (len bytes) under the 128-bit key k. */
uint64_t mw_siphash(const uint64_t k[2], const void *in, size_t len);

/* Fills k with a random key (getrandom; without entropy yet, early in
 * boot, something that still differs per process and per call). */
void mw_siphash_seed(uint64_t k[2]);

#endif
