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

int mw_md_list_add(mw_md_list *l, const char *k, size_t kl, const char *v,
                  size_t vl, char *err, size_t errlen) {
  if (!valid_key(k, kl, err, errlen) || !valid_value(k, kl, v, vl, err, errlen))
    return -1;
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
  return 0;
}

