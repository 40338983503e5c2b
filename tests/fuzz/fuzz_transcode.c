/* REST transcoding (codec/mw_transcode.h) over arbitrary requests: routing,
 * percent-decoding, query parsing and body mapping must never crash, and a
 * request that matches must give a request message that decodes. The
 * routes are tests/data/transcode/library.proto's. Input: one byte picks
 * the HTTP method, then path, query and body separated by NUL bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_fs.h"
#include "codec/mw_transcode.h"
#include "schema/mw_schema.h"
#include "upb/decode.h"
#include "upb/reflection.h"

static mw_schema *schema;
static mw_transcode *table;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  size_t len;
  char *pb;
  mw_diag d = {0};
  schema = mw_schema_new();
  if (!schema || mw_fs_read(MW_FUZZ_LIBRARY_PB, 1 << 20, &pb, &len, NULL) != MW_FS_OK ||
      mw_schema_add_set(schema, pb, len, MW_FUZZ_LIBRARY_PB, &d) != 0)
    abort();
  free(pb);
  const upb_ServiceDef *svc =
      upb_DefPool_FindServiceByName(mw_schema_pool(schema), "library.v1.Library");
  if (!svc) abort();
  table = mw_transcode_build(mw_schema_pool(schema), &svc, 1, NULL, 0, &d);
  if (!table) abort();
  return 0;
}

static const char *next(const char **p, const char *end, size_t *len) {
  const char *s = *p;
  const char *z = memchr(s, '\0', (size_t)(end - s));
  *len = (size_t)((z ? z : end) - s);
  *p = z ? z + 1 : end;
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "SEARCH", "HEAD"};
  if (size < 1) return 0;
  const char *method = methods[data[0] % 7];
  int opts = (data[0] / 7) & 3;
  const char *p = (const char *)data + 1, *end = (const char *)data + size;
  size_t plen, qlen, blen;
  const char *path = next(&p, end, &plen);
  const char *query = next(&p, end, &qlen);
  const char *body = next(&p, end, &blen);
  upb_Arena *a = upb_Arena_New();
  mw_transcode_call c;
  mw_transcode_error err;
  if (mw_transcode_match(table, method, path, plen, query, qlen, body, blen, NULL, opts, NULL, a,
                         &c, &err) == 0) {
    const upb_MessageDef *in = upb_MethodDef_InputType(c.method);
    upb_Message *m = upb_Message_New(in, a);
    if (upb_Decode(c.request, c.request_len, m, upb_MessageDef_MiniTable(in), NULL, 0, a) !=
        kUpb_DecodeStatus_Ok) {
      fprintf(stderr, "a matched request does not decode\n");
      abort();
    }
  } else if (err.http_status < 400 || err.http_status > 500 || !err.message[0]) {
    fprintf(stderr, "an error without a status or message\n");
    abort();
  }
  upb_Arena_Free(a);
  return 0;
}
