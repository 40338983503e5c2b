/* The proto3 JSON codec (codec/mw_json.h) on a pipe, for
 * tests/e2e/test_json_format.py, which compares it with protobuf's own
 * json_format. Loads a schema from the directories given, then answers one
 * request per line of stdin:
 *
 *   b2j <options> <type> <base64 of binary>   -> ok <base64 of JSON>
 *   j2b <options> <type> <base64 of JSON>     -> ok <base64 of binary>
 *
 * or "err <status> <message>". options is the bit set of mw_json.h in
 * decimal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_diag.h"
#include "codec/mw_json.h"
#include "schema/mw_schema.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64v(int c) {
  const char *p = c ? strchr(B64, c) : NULL;
  return p ? (int)(p - B64) : -1;
}

/* In place; returns the length or -1. */
static long unb64(char *s) {
  size_t n = strlen(s), o = 0;
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n && s[i] != '='; i++) {
    int v = b64v((unsigned char)s[i]);
    if (v < 0) return -1;
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      s[o++] = (char)((acc >> bits) & 0xFF);
    }
  }
  return (long)o;
}

static void put_b64(const unsigned char *p, size_t n) {
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    putchar(B64[p[i] >> 2]);
    putchar(B64[((p[i] & 3) << 4) | (p[i + 1] >> 4)]);
    putchar(B64[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)]);
    putchar(B64[p[i + 2] & 63]);
  }
  if (n - i == 1) {
    putchar(B64[p[i] >> 2]);
    putchar(B64[(p[i] & 3) << 4]);
    fputs("==", stdout);
  } else if (n - i == 2) {
    putchar(B64[p[i] >> 2]);
    putchar(B64[((p[i] & 3) << 4) | (p[i + 1] >> 4)]);
    putchar(B64[(p[i + 1] & 15) << 2]);
    putchar('=');
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: json_conv DIR... < requests\n");
    return 2;
  }
  mw_schema_input in = {(const char *const *)argv + 1, (size_t)(argc - 1), NULL, 0, NULL, 0};
  mw_diag d = {0};
  mw_schema *s = mw_schema_load(&in, &d);
  if (!s) {
    fprintf(stderr, "json_conv: %s\n", mw_diag_count(&d) ? d.msgs[0] : "cannot load the schema");
    mw_diag_free(&d);
    return 1;
  }
  const upb_DefPool *pool = mw_schema_pool(s);
  size_t cap = 1 << 20;
  char *line = malloc(cap);
  ssize_t got;
  while (line && (got = getline(&line, &cap, stdin)) > 0) {
    if (line[got - 1] == '\n') line[got - 1] = '\0';
    char *save, *op = strtok_r(line, " ", &save), *opts = strtok_r(NULL, " ", &save),
                *type = strtok_r(NULL, " ", &save), *data = strtok_r(NULL, " ", &save);
    if (!data) data = (char *)"";
    const upb_MessageDef *m = type ? upb_DefPool_FindMessageByName(pool, type) : NULL;
    long n = unb64(data);
    if (!op || !opts || !m || n < 0) {
      printf("err 0 bad request\n");
      fflush(stdout);
      continue;
    }
    upb_Arena *a = upb_Arena_New();
    const char *out = NULL;
    size_t out_len = 0;
    char err[512];
    mw_json_status st;
    if (strcmp(op, "b2j") == 0)
      st = mw_json_from_binary(data, (size_t)n, m, pool, atoi(opts), NULL, a, &out, &out_len, err,
                               sizeof err);
    else
      st = mw_json_to_binary(data, (size_t)n, m, pool, atoi(opts), NULL, a, &out, &out_len, err,
                             sizeof err);
    if (st == MW_JSON_OK) {
      fputs("ok ", stdout);
      put_b64((const unsigned char *)out, out_len);
      putchar('\n');
    } else {
      for (char *c = err; *c; c++)
        if (*c == '\n') *c = ' ';
      printf("err %d %s\n", (int)st, err);
    }
    fflush(stdout);
    upb_Arena_Free(a);
  }
  free(line);
  mw_schema_free(s);
  return 0;
}
