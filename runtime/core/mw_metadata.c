/* Response metadata: validated keys and values in gRPC core's form. */
#include "core/mw_metadata.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/slice.h>

void mw_md_list_free(mw_md_list *l) {
  for (size_t i = 0; i < l->n; i++) {
    grpc_slice_unref(l->v[i].key);
    grpc_slice_unref(l->v[i].value);
  }
  free(l->v);
  l->v = NULL;
  l->n = l->cap = 0;
  l->bytes = 0;
}

static int valid_key(const char *k, size_t kl, char *err, size_t errlen) {
  if (kl == 0) {
    snprintf(err, errlen, "metadata key is empty");
    return 0;
  }
  for (size_t i = 0; i < kl; i++) {
    char ch = k[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
          ch == '_' || ch == '.')) {
      snprintf(err, errlen,
               "metadata key '%.*s' is not valid: use lowercase letters, "
               "digits, '-', '_' and '.'",
               (int)kl, k);
      return 0;
    }
  }
  if (kl >= 5 && memcmp(k, "grpc-", 5) == 0) {
    snprintf(err, errlen, "metadata key '%.*s' is reserved for gRPC", (int)kl,
             k);
    return 0;
  }
  return 1;
}

static int valid_value(const char *k, size_t kl, const char *v, size_t vl,
                       char *err, size_t errlen) {
  if (kl > 4 && memcmp(k + kl - 4, "-bin", 4) == 0) return 1;
  for (size_t i = 0; i < vl; i++) {
    unsigned char ch = (unsigned char)v[i];
    if (ch < 0x20 || ch > 0x7e) {
      snprintf(err, errlen,
               "metadata value of '%.*s' must be printable ASCII (use a key "
               "ending in -bin for binary values)",
               (int)kl, k);
      return 0;
    }
  }
  return 1;
}

/* What an entry costs in a header list: gRPC core sends -bin values in
 * base64, and HTTP/2 adds 32 bytes to each entry. */
static size_t entry_size(const char *k, size_t kl, size_t vl) {
  int bin = kl > 4 && memcmp(k + kl - 4, "-bin", 4) == 0;
  return kl + (bin ? (vl + 2) / 3 * 4 : vl) + 32;
}

static int list_add(mw_md_list *l, const char *k, size_t kl, const char *v,
                    size_t vl, size_t max_bytes, const char *what, char *err,
                    size_t errlen);

int mw_md_list_add(mw_md_list *l, const char *k, size_t kl, const char *v,
                   size_t vl, size_t max_bytes, const char *what, char *err,
                   size_t errlen) {
  if (!valid_key(k, kl, err, errlen) || !valid_value(k, kl, v, vl, err, errlen))
    return -1;
  return list_add(l, k, kl, v, vl, max_bytes, what, err, errlen);
}

int mw_md_list_add_reserved(mw_md_list *l, const char *k, size_t kl, const char *v,
                            size_t vl, size_t max_bytes, const char *what,
                            char *err, size_t errlen) {
  if (!valid_value(k, kl, v, vl, err, errlen)) return -1;
  return list_add(l, k, kl, v, vl, max_bytes, what, err, errlen);
}

static int list_add(mw_md_list *l, const char *k, size_t kl, const char *v,
                    size_t vl, size_t max_bytes, const char *what, char *err,
                    size_t errlen) {
  /* Refused here, with the limit named: past it the client drops the whole
   * response with an error that does not say why. */
  size_t size = entry_size(k, kl, vl);
  if (max_bytes && l->bytes + size > max_bytes) {
    snprintf(err, errlen,
             "metadata '%.*s' (%zu bytes) would make the response %s %zu bytes, "
             "over their limit of %zu (limits.max_header_list_size, at most 8 KiB, "
             "less 1 KiB for the runtime's own; an entry is key + value + 32)",
             kl > 64 ? 64 : (int)kl, k, size, what, l->bytes + size, max_bytes);
    return -1;
  }
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    grpc_metadata *nv = realloc(l->v, cap * sizeof *nv);
    if (!nv) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    l->v = nv;
    l->cap = cap;
  }
  grpc_metadata *m = &l->v[l->n++];
  memset(m, 0, sizeof *m);
  m->key = grpc_slice_from_copied_buffer(k, kl);
  m->value = grpc_slice_from_copied_buffer(v, vl);
  l->bytes += size;
  return 0;
}

