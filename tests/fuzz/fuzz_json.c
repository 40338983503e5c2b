/* The proto3 JSON codec (codec/mw_json.h) over arbitrary text: the reader
 * must never crash, and what it accepts must write back as JSON that it
 * accepts again (the writer refuses nothing the reader made). The schema is
 * tests/data/json/json_test.proto (every well-known type) and fuzz.proto;
 * the first input byte picks the message type and the options. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_fs.h"
#include "codec/mw_json.h"
#include "schema/mw_schema.h"

static const char *const types[] = {"jt.WellKnown", "jt.Inner", "jt.Names", "mwfuzz.Node",
                                    "mwfuzz.Scalars", "mwfuzz.Repeated", "mwfuzz.Maps",
                                    "google.protobuf.Any", "google.protobuf.Value"};
#define N_TYPES (sizeof types / sizeof types[0])

static mw_schema *schema;
static const upb_MessageDef *defs[N_TYPES];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void add(const char *path) {
  size_t len;
  char *pb;
  mw_diag d = {0};
  if (mw_fs_read(path, 1 << 20, &pb, &len, NULL) != MW_FS_OK ||
      mw_schema_add_set(schema, pb, len, path, &d) != 0) {
    fprintf(stderr, "fuzz_json: cannot load %s\n", path);
    abort();
  }
  free(pb);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  schema = mw_schema_new();
  if (!schema) abort();
  add(MW_FUZZ_PB);
  add(MW_FUZZ_JSON_PB);
  for (size_t i = 0; i < N_TYPES; i++) {
    defs[i] = upb_DefPool_FindMessageByName(mw_schema_pool(schema), types[i]);
    if (!defs[i]) abort();
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const upb_MessageDef *m = defs[data[0] % N_TYPES];
  int opts = (data[0] / N_TYPES) & (MW_JSON_EMIT_DEFAULTS | MW_JSON_PROTO_NAMES |
                                    MW_JSON_IGNORE_UNKNOWN);
  const upb_DefPool *pool = mw_schema_pool(schema);
  mw_json_limits lim = {1 << 16, 1 << 20, 0};
  upb_Arena *a = upb_Arena_New();
  const char *bin, *text, *bin2;
  size_t blen, tlen, blen2;
  char err[256];
  if (mw_json_to_binary((const char *)data + 1, size - 1, m, pool, opts, &lim, a, &bin, &blen,
                        err, sizeof err) == MW_JSON_OK) {
    mw_json_status st =
        mw_json_from_binary(bin, blen, m, pool, opts, NULL, a, &text, &tlen, err, sizeof err);
    if (st != MW_JSON_OK) {
      fprintf(stderr, "read, but cannot write back: %s\n", err);
      abort();
    }
    if (mw_json_to_binary(text, tlen, m, pool, opts & ~MW_JSON_IGNORE_UNKNOWN, NULL, a, &bin2,
                          &blen2, err, sizeof err) != MW_JSON_OK) {
      fprintf(stderr, "cannot read what was written (%s): %s\n", err, text);
      abort();
    }
  }
  upb_Arena_Free(a);
  return 0;
}
