/* Bounded inflation (see mw_inflate.h). The output buffer starts near the
 * size the message probably has and doubles up to max; once it holds max
 * bytes, zlib is given one byte of room more: if it fills it, the message
 * is too large and inflation stops there, whatever is left of the input. */
#include "compress/mw_inflate.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* The first output buffer: four times the input (protobuf messages rarely
 * compress better), at least 4 KiB, never more than max. */
#define MW_INFLATE_FIRST 4096

static size_t first_cap(size_t in_total, size_t max) {
  size_t cap = in_total > SIZE_MAX / 4 ? SIZE_MAX : in_total * 4;
  if (cap < MW_INFLATE_FIRST) cap = MW_INFLATE_FIRST;
  return cap > max ? max : cap;
}

/* The input, chunk by chunk: zlib takes at most UINT_MAX bytes at a time. */
typedef struct reader {
  const mw_inflate_chunk *in;
  size_t n, i, off; /* chunk i, of which off bytes were handed to zlib */
} reader;

/* Gives zlib the next bytes once it has used the last; 0 when none are left. */
static int feed(reader *rd, z_stream *zs) {
  if (zs->avail_in) return 1;
  while (rd->i < rd->n && rd->off == rd->in[rd->i].len) {
    rd->i++;
    rd->off = 0;
  }
  if (rd->i == rd->n) return 0;
  size_t take = rd->in[rd->i].len - rd->off;
  if (take > UINT_MAX) take = UINT_MAX;
  zs->next_in = (Bytef *)((const unsigned char *)rd->in[rd->i].data + rd->off);
  zs->avail_in = (uInt)take;
  rd->off += take;
  return 1;
}

/* Whether input is left that zlib has not used (bytes after the stream). */
static int input_left(const reader *rd, const z_stream *zs) {
  if (zs->avail_in) return 1;
  for (size_t j = rd->i; j < rd->n; j++)
    if (j == rd->i ? rd->off < rd->in[j].len : rd->in[j].len > 0) return 1;
  return 0;
}

mw_inflate_result mw_inflate(mw_coding coding, const mw_inflate_chunk *in,
                             size_t n, size_t max, char **out,
                             size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (coding != MW_CODING_DEFLATE && coding != MW_CODING_GZIP)
    return MW_INFLATE_CORRUPT;
  size_t in_total = 0;
  for (size_t i = 0; i < n; i++)
    in_total = in[i].len > SIZE_MAX - in_total ? SIZE_MAX : in_total + in[i].len;

  z_stream zs;
  memset(&zs, 0, sizeof zs);
  /* 15: the largest window, as any sender may use; +16: gzip's header. */
  if (inflateInit2(&zs, coding == MW_CODING_GZIP ? 15 + 16 : 15) != Z_OK)
    return MW_INFLATE_NOMEM;
  size_t cap = first_cap(in_total, max);
  char *buf = malloc(cap ? cap : 1); /* never NULL, even when empty */
  if (!buf) {
    inflateEnd(&zs);
    return MW_INFLATE_NOMEM;
  }
  size_t used = 0;
  unsigned char probe; /* where a byte past max would go */
  reader rd = {in, n, 0, 0};
  mw_inflate_result r;
  for (;;) {
    feed(&rd, &zs);
    if (used == cap && cap < max) {
      size_t ncap = cap > max / 2 ? max : cap * 2;
      char *nb = realloc(buf, ncap);
      if (!nb) {
        r = MW_INFLATE_NOMEM;
        break;
      }
      buf = nb;
      cap = ncap;
    }
    int probing = used == cap;
    if (probing) {
      zs.next_out = &probe;
      zs.avail_out = 1;
    } else {
      size_t room = cap - used;
      zs.next_out = (Bytef *)buf + used;
      zs.avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
    }
    uInt room_before = zs.avail_out;
    int ret = inflate(&zs, Z_NO_FLUSH);
    size_t produced = room_before - zs.avail_out;
    if (probing && produced) {
      r = MW_INFLATE_TOO_LARGE;
      break;
    }
    used += produced;
    if (ret == Z_STREAM_END) {
      r = input_left(&rd, &zs) ? MW_INFLATE_CORRUPT : MW_INFLATE_OK;
      break;
    }
    if (ret == Z_OK) continue;
    /* Z_DATA_ERROR; Z_NEED_DICT (gRPC has no preset dictionaries);
     * Z_BUF_ERROR: no progress although zlib had room and all the input
     * left, so the stream is cut short. */
    r = ret == Z_MEM_ERROR ? MW_INFLATE_NOMEM : MW_INFLATE_CORRUPT;
    break;
  }
  inflateEnd(&zs);
  if (r != MW_INFLATE_OK) {
    free(buf);
    return r;
  }
  *out = buf;
  *out_len = used;
  return MW_INFLATE_OK;
}

const char *mw_inflate_result_text(mw_inflate_result r) {
  switch (r) {
  case MW_INFLATE_OK: return "ok";
  case MW_INFLATE_TOO_LARGE: return "larger than the limit once inflated";
  case MW_INFLATE_CORRUPT: return "corrupt compressed data";
  case MW_INFLATE_NOMEM: return "out of memory while inflating";
  }
  return "unknown inflate result";
}
