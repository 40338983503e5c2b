/* Compression on core's side (see mw_compress.h). */
#include "core/mw_compress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/mw_inflate.h"

int mw_compress_policy_init(mw_compress_policy *p, const mw_config *cfg) {
  memset(p, 0, sizeof *p);
  p->all.algorithm = cfg->compression.algorithm;
  p->all.min_bytes = (size_t)cfg->compression.min_bytes;
  p->active = p->all.algorithm != MW_CONFIG_COMPRESS_NONE;
  size_t n = cfg->compression.n_methods;
  if (!n) return 0;
  p->methods = calloc(n, sizeof *p->methods);
  if (!p->methods) return -1;
  for (size_t i = 0; i < n; i++) {
    const mw_config_compress_method *m = &cfg->compression.methods[i];
    mw_compress_rule *r = &p->methods[i];
    r->path = strdup(m->path);
    if (!r->path) {
      mw_compress_policy_free(p);
      return -1;
    }
    p->n_methods++;
    r->algorithm = m->algorithm >= 0 ? m->algorithm : p->all.algorithm;
    r->min_bytes = m->min_bytes >= 0 ? (size_t)m->min_bytes : p->all.min_bytes;
    if (r->algorithm != MW_CONFIG_COMPRESS_NONE) p->active = 1;
  }
  return 0;
}

void mw_compress_policy_free(mw_compress_policy *p) {
  for (size_t i = 0; i < p->n_methods; i++) free(p->methods[i].path);
  free(p->methods);
  memset(p, 0, sizeof *p);
}

const mw_compress_rule *mw_compress_policy_for(const mw_compress_policy *p,
                                               const char *path) {
  const mw_compress_rule *r = &p->all;
  /* A handful of methods at most: a scan costs less than a table. */
  for (size_t i = 0; i < p->n_methods; i++)
    if (strcmp(p->methods[i].path, path) == 0) r = &p->methods[i];
  return r->algorithm == MW_CONFIG_COMPRESS_NONE ? NULL : r;
}

grpc_compression_level mw_compress_level(const mw_compress_rule *r) {
  return r->algorithm == MW_CONFIG_COMPRESS_DEFLATE ? GRPC_COMPRESS_LEVEL_HIGH
                                                    : GRPC_COMPRESS_LEVEL_LOW;
}

/* The message's slices as zlib's input, without copying; a message of more
 * slices than fit on the stack costs one allocation. */
#define MW_INLINE_CHUNKS 16

mw_status mw_compress_inflate(grpc_byte_buffer *bb, size_t max,
                              grpc_slice *out, char *msg, size_t msglen) {
  *out = grpc_empty_slice();
  grpc_compression_algorithm alg = bb->data.raw.compression;
  const char *name = alg == GRPC_COMPRESS_GZIP ? "gzip" : "deflate";
  if (bb->type != GRPC_BB_RAW ||
      (alg != GRPC_COMPRESS_GZIP && alg != GRPC_COMPRESS_DEFLATE)) {
    /* Core accepts only the algorithms of its enabled set, all of which
     * are these two; anything else is a core we do not know. */
    snprintf(msg, msglen, "unsupported message compression (%d)", (int)alg);
    return MW_STATUS_UNIMPLEMENTED;
  }
  const grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
  mw_inflate_chunk inline_chunks[MW_INLINE_CHUNKS];
  mw_inflate_chunk *chunks = inline_chunks;
  if (sb->count > MW_INLINE_CHUNKS) {
    chunks = malloc(sb->count * sizeof *chunks);
    if (!chunks) {
      snprintf(msg, msglen, "out of memory");
      return MW_STATUS_RESOURCE_EXHAUSTED;
    }
  }
  for (size_t i = 0; i < sb->count; i++) {
    chunks[i].data = GRPC_SLICE_START_PTR(sb->slices[i]);
    chunks[i].len = GRPC_SLICE_LENGTH(sb->slices[i]);
  }
  char *data;
  size_t len;
  mw_inflate_result r =
      mw_inflate(alg == GRPC_COMPRESS_GZIP ? MW_CODING_GZIP : MW_CODING_DEFLATE,
                 chunks, sb->count, max, &data, &len);
  if (chunks != inline_chunks) free(chunks);
  switch (r) {
  case MW_INFLATE_OK:
    *out = grpc_slice_new(data, len, free);
    return MW_STATUS_OK;
  case MW_INFLATE_TOO_LARGE:
    /* grpc-go's words for the same refusal. */
    snprintf(msg, msglen,
             "received message after decompression larger than max (%zu)",
             max);
    return MW_STATUS_RESOURCE_EXHAUSTED;
  case MW_INFLATE_CORRUPT:
    snprintf(msg, msglen, "the request message is not valid %s data", name);
    return MW_STATUS_INVALID_ARGUMENT;
  case MW_INFLATE_NOMEM:
    break;
  }
  snprintf(msg, msglen, "out of memory while inflating the request message");
  return MW_STATUS_RESOURCE_EXHAUSTED;
}
