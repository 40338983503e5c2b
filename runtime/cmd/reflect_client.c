/* The reflection exchange (reflect_client.h). The protocol's messages are
 * few and flat, so they are written and read here on the wire format
 * directly: the client needs no schema to fetch a schema. */
#include "cmd/reflect_client.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_buf.h"
#include "base/mw_status.h"
#include "google/protobuf/descriptor.upb.h"

static const char *const paths[] = {
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
};

struct mw_reflect {
  mw_rpc_conn *conn;
  const mw_rpc_md *md;
  size_t n_md;
  double timeout_s;
  mw_rpc *rpc;     /* the open stream, or NULL */
  int version;     /* index in paths */
  int answered;    /* the stream answered once: its version works */
};

/* --- the wire format -------------------------------------------------- */

static void put_varint(mw_buf *b, uint64_t v) {
  char c[10];
  size_t n = 0;
  do {
    c[n++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  mw_buf_put(b, c, n);
}

/* A length-delimited field. */
static void put_bytes(mw_buf *b, uint32_t field, const char *s, size_t n) {
  put_varint(b, (uint64_t)field << 3 | 2);
  put_varint(b, n);
  mw_buf_put(b, s, n);
}

typedef struct rd {
  const unsigned char *p, *end;
} rd;

static int get_varint(rd *r, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
    unsigned char c = *r->p++;
    *v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) return 0;
  }
  return -1;
}

/* The next field: its number, wire type and, for varints, value; for
 * length-delimited ones, the bytes. -1 on a malformed message, 0 at the
 * end, 1 with a field. */
static int next_field(rd *r, uint32_t *field, int *wt, uint64_t *v, const char **s, size_t *n) {
  if (r->p >= r->end) return 0;
  uint64_t key;
  if (get_varint(r, &key) != 0) return -1;
  *field = (uint32_t)(key >> 3);
  *wt = (int)(key & 7);
  switch (*wt) {
    case 0: return get_varint(r, v) == 0 ? 1 : -1;
    case 1:
      if (r->end - r->p < 8) return -1;
      r->p += 8;
      return 1;
    case 5:
      if (r->end - r->p < 4) return -1;
      r->p += 4;
      return 1;
    case 2:
      if (get_varint(r, v) != 0 || *v > (uint64_t)(r->end - r->p)) return -1;
      *s = (const char *)r->p;
      *n = (size_t)*v;
      r->p += *v;
      return 1;
    default: return -1;
  }
}

/* --- the stream ------------------------------------------------------- */

mw_reflect *mw_reflect_new(mw_rpc_conn *conn, const mw_rpc_md *md, size_t n_md,
                           double timeout_s) {
  mw_reflect *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->conn = conn;
  r->md = md;
  r->n_md = n_md;
  r->timeout_s = timeout_s;
  return r;
}

static void close_stream(mw_reflect *r) {
  if (!r->rpc) return;
  mw_rpc_close_send(r->rpc);
  mw_rpc_cancel(r->rpc);
  mw_rpc_free(r->rpc);
  r->rpc = NULL;
}

void mw_reflect_free(mw_reflect *r) {
  if (!r) return;
  close_stream(r);
  free(r);
}

/* Sends one request and reads its response (malloc'd into *resp). Opens
 * the stream first; a v1 stream that fails UNIMPLEMENTED before it ever
 * answered is retried once as v1alpha. */
static int exchange(mw_reflect *r, const char *req, size_t req_len, char **resp,
                    size_t *resp_len, char *err, size_t errlen) {
  for (;;) {
    if (!r->rpc) {
      r->rpc = mw_rpc_start(r->conn, paths[r->version], r->timeout_s, r->md, r->n_md, err, errlen);
      if (!r->rpc) return MW_REFLECT_LOCAL;
    }
    mw_rpc_send(r->rpc, req, req_len); /* a failure shows in the receive */
    if (mw_rpc_recv(r->rpc, resp, resp_len) == 1) {
      r->answered = 1;
      return 0;
    }
    mw_rpc_close_send(r->rpc);
    int code = mw_rpc_finish(r->rpc);
    if (code == MW_STATUS_OK) code = MW_STATUS_INTERNAL; /* ended without answering */
    if (code == MW_STATUS_UNIMPLEMENTED && r->version == 0 && !r->answered) {
      close_stream(r);
      r->version = 1;
      continue;
    }
    if (code == MW_STATUS_UNIMPLEMENTED)
      snprintf(err, errlen, "the server does not support the reflection API (%s); give the "
               "schema with --proto or --protoset", mw_rpc_message(r->rpc));
    else if (code == MW_STATUS_INTERNAL && !*mw_rpc_message(r->rpc))
      snprintf(err, errlen, "server reflection: the stream ended without an answer");
    else
      snprintf(err, errlen, "server reflection: %s: %s", mw_status_name(code),
               mw_rpc_message(r->rpc));
    close_stream(r);
    return code;
  }
}

/* Which of the response's oneof is set, and its bytes. 0 with *what set,
 * or a code with err filled (error_response: its own code). */
static int response_body(const char *resp, size_t len, uint32_t *what, const char **body,
                         size_t *body_len, char *err, size_t errlen) {
  rd r = {(const unsigned char *)resp, (const unsigned char *)resp + len};
  uint32_t f;
  int wt, got;
  uint64_t v;
  const char *s = NULL;
  size_t n = 0;
  *what = 0;
  while ((got = next_field(&r, &f, &wt, &v, &s, &n)) == 1) {
    if (wt == 2 && f >= 4 && f <= 7) {
      *what = f;
      *body = s;
      *body_len = n;
    }
  }
  if (got < 0 || !*what) {
    snprintf(err, errlen, "server reflection: a response that is not a ServerReflectionResponse");
    return MW_REFLECT_LOCAL;
  }
  if (*what == 7) { /* error_response {error_code = 1, error_message = 2} */
    rd e = {(const unsigned char *)*body, (const unsigned char *)*body + *body_len};
    int code = MW_STATUS_UNKNOWN;
    const char *msg = "";
    size_t msg_len = 0;
    while (next_field(&e, &f, &wt, &v, &s, &n) == 1) {
      if (f == 1 && wt == 0) code = (int)v;
      if (f == 2 && wt == 2) msg = s, msg_len = n;
    }
    if (code <= 0 || code >= MW_STATUS_COUNT) code = MW_STATUS_UNKNOWN;
    snprintf(err, errlen, "%.*s", (int)msg_len, msg);
    return code;
  }
  return 0;
}

/* One request (field = value) and its answer's body, which must be the
 * answer field `want` (what names the request in the error). *resp is the
 * answer to free (NULL on failure). */
static int ask(mw_reflect *r, uint32_t field, const char *value, size_t vlen, uint32_t want,
               const char *what_text, char **resp, const char **body, size_t *body_len,
               char *err, size_t errlen) {
  *resp = NULL;
  mw_buf req = {0};
  put_bytes(&req, field, value, vlen);
  if (req.oom) {
    snprintf(err, errlen, "out of memory");
    return MW_REFLECT_LOCAL;
  }
  size_t len = 0;
  int rc = exchange(r, req.p, req.len, resp, &len, err, errlen);
  mw_buf_free(&req);
  if (rc != 0) return rc;
  uint32_t what;
  rc = response_body(*resp, len, &what, body, body_len, err, errlen);
  if (rc == 0 && what != want) {
    snprintf(err, errlen, "server reflection: %s answered with something else", what_text);
    rc = MW_REFLECT_LOCAL;
  }
  return rc;
}

int mw_reflect_services(mw_reflect *r, mw_strvec *names, char *err, size_t errlen) {
  char *resp;
  const char *body;
  size_t body_len;
  /* list_services: the content is ignored */
  int rc = ask(r, 7, "*", 1, 6, "list_services", &resp, &body, &body_len, err, errlen);
  if (rc == 0) {
    rd b = {(const unsigned char *)body, (const unsigned char *)body + body_len};
    uint32_t f, f2;
    int wt, wt2;
    uint64_t v;
    const char *s, *s2;
    size_t n, n2;
    while (rc == 0 && next_field(&b, &f, &wt, &v, &s, &n) == 1) {
      if (f != 1 || wt != 2) continue;
      rd svc = {(const unsigned char *)s, (const unsigned char *)s + n};
      while (next_field(&svc, &f2, &wt2, &v, &s2, &n2) == 1) {
        if (f2 != 1 || wt2 != 2) continue;
        char *name = strndup(s2, n2);
        if (mw_strvec_take(names, name) != 0) {
          snprintf(err, errlen, "out of memory");
          rc = MW_REFLECT_LOCAL;
        }
      }
    }
  }
  free(resp);
  return rc;
}

/* The files the server sent, by name, until the set is closed. */
typedef struct fileset {
  char **names;
  char **protos;
  size_t *lens;
  size_t n, cap;
  int *emitted;
} fileset;

static ptrdiff_t fileset_find(const fileset *fs, const char *name) {
  for (size_t i = 0; i < fs->n; i++)
    if (strcmp(fs->names[i], name) == 0) return (ptrdiff_t)i;
  return -1;
}

static void fileset_free(fileset *fs) {
  for (size_t i = 0; i < fs->n; i++) {
    free(fs->names[i]);
    free(fs->protos[i]);
  }
  free(fs->names);
  free(fs->protos);
  free(fs->lens);
  free(fs->emitted);
  memset(fs, 0, sizeof *fs);
}

/* Adds the FileDescriptorProtos of a file_descriptor_response; a file
 * already there is kept. */
static int fileset_add_response(fileset *fs, const char *body, size_t body_len, char *err,
                                size_t errlen) {
  rd b = {(const unsigned char *)body, (const unsigned char *)body + body_len};
  uint32_t f;
  int wt;
  uint64_t v;
  const char *s;
  size_t n;
  upb_Arena *a = upb_Arena_New();
  if (!a) {
    snprintf(err, errlen, "out of memory");
    return MW_REFLECT_LOCAL;
  }
  int rc = 0;
  while (rc == 0 && next_field(&b, &f, &wt, &v, &s, &n) == 1) {
    if (f != 1 || wt != 2) continue;
    const google_protobuf_FileDescriptorProto *fd =
        google_protobuf_FileDescriptorProto_parse(s, n, a);
    upb_StringView name = fd ? google_protobuf_FileDescriptorProto_name(fd) : (upb_StringView){0};
    if (!fd || !name.size) {
      snprintf(err, errlen, "server reflection: a file that is not a FileDescriptorProto");
      rc = MW_REFLECT_LOCAL;
      break;
    }
    char *nm = strndup(name.data, name.size);
    if (!nm) {
      rc = MW_REFLECT_LOCAL;
      snprintf(err, errlen, "out of memory");
      break;
    }
    if (fileset_find(fs, nm) >= 0) {
      free(nm);
      continue;
    }
    if (fs->n == fs->cap) {
      size_t cap = fs->cap ? fs->cap * 2 : 16;
      char **nn = realloc(fs->names, cap * sizeof *nn);
      if (nn) fs->names = nn;
      char **np = realloc(fs->protos, cap * sizeof *np);
      if (np) fs->protos = np;
      size_t *nl = realloc(fs->lens, cap * sizeof *nl);
      if (nl) fs->lens = nl;
      int *ne = realloc(fs->emitted, cap * sizeof *ne);
      if (ne) fs->emitted = ne;
      if (!nn || !np || !nl || !ne) {
        free(nm);
        snprintf(err, errlen, "out of memory");
        rc = MW_REFLECT_LOCAL;
        break;
      }
      fs->cap = cap;
    }
    char *copy = malloc(n ? n : 1);
    if (!copy) {
      free(nm);
      snprintf(err, errlen, "out of memory");
      rc = MW_REFLECT_LOCAL;
      break;
    }
    memcpy(copy, s, n);
    fs->names[fs->n] = nm;
    fs->protos[fs->n] = copy;
    fs->lens[fs->n] = n;
    fs->emitted[fs->n] = 0;
    fs->n++;
  }
  upb_Arena_Free(a);
  return rc;
}

/* One request (field, value) whose answer must be files. */
static int ask_files(mw_reflect *r, uint32_t field, const char *value, fileset *fs, char *err,
                     size_t errlen) {
  char *resp;
  const char *body;
  size_t body_len;
  int rc = ask(r, field, value, strlen(value), 4, "a request for files", &resp, &body,
               &body_len, err, errlen);
  if (rc == 0) rc = fileset_add_response(fs, body, body_len, err, errlen);
  free(resp);
  return rc;
}

/* The dependencies of file i, each looked up in the set. */
static int for_deps(const fileset *fs, size_t i, upb_Arena *a, upb_StringView **deps,
                    size_t *n) {
  const google_protobuf_FileDescriptorProto *fd =
      google_protobuf_FileDescriptorProto_parse(fs->protos[i], fs->lens[i], a);
  if (!fd) return -1;
  *deps = (upb_StringView *)google_protobuf_FileDescriptorProto_dependency(fd, n);
  return 0;
}

/* Files in dependency order (imports before their importers), each
 * written as FileDescriptorSet.file (field 1); those the schema already
 * holds are left out. */
static void emit(const fileset *fs, size_t i, const mw_schema *s, mw_buf *out, upb_Arena *a) {
  if (fs->emitted[i]) return;
  fs->emitted[i] = 1;
  upb_StringView *deps = NULL;
  size_t n = 0;
  if (for_deps(fs, i, a, &deps, &n) == 0) {
    for (size_t d = 0; d < n; d++) {
      char *name = strndup(deps[d].data, deps[d].size);
      if (!name) {
        out->oom = 1; /* reported as out of memory */
        continue;
      }
      ptrdiff_t j = fileset_find(fs, name);
      free(name);
      if (j >= 0) emit(fs, (size_t)j, s, out, a);
    }
  }
  if (!upb_DefPool_FindFileByName(mw_schema_pool(s), fs->names[i]))
    put_bytes(out, 1, fs->protos[i], fs->lens[i]);
}

int mw_reflect_symbol(mw_reflect *r, const char *symbol, mw_schema *s, char *err,
                      size_t errlen) {
  fileset fs = {0};
  int rc = ask_files(r, 4, symbol, &fs, err, errlen); /* file_containing_symbol */
  if (rc == MW_STATUS_NOT_FOUND && !*err)
    snprintf(err, errlen, "the server does not know the symbol %s", symbol);
  upb_Arena *a = upb_Arena_New();
  if (!a && rc == 0) {
    snprintf(err, errlen, "out of memory");
    rc = MW_REFLECT_LOCAL;
  }
  /* Close the set: every import the server has not sent yet, by name. */
  for (size_t i = 0; rc == 0 && i < fs.n; i++) {
    upb_StringView *deps = NULL;
    size_t n = 0;
    if (for_deps(&fs, i, a, &deps, &n) != 0) continue;
    for (size_t d = 0; rc == 0 && d < n; d++) {
      char *name = strndup(deps[d].data, deps[d].size);
      if (!name) {
        rc = MW_REFLECT_LOCAL;
        snprintf(err, errlen, "out of memory");
        break;
      }
      if (fileset_find(&fs, name) < 0 && !upb_DefPool_FindFileByName(mw_schema_pool(s), name)) {
        rc = ask_files(r, 3, name, &fs, err, errlen); /* file_by_filename */
        if (rc == 0 && fileset_find(&fs, name) < 0) {
          snprintf(err, errlen, "server reflection: asked for %s, it sent other files", name);
          rc = MW_REFLECT_LOCAL;
        } else if (rc > 0) {
          char why[256];
          snprintf(why, sizeof why, "%s", err);
          snprintf(err, errlen, "server reflection: %s imports %s, which the server cannot "
                   "give: %s", fs.names[i], name, why);
        }
      }
      free(name);
    }
  }
  if (rc == 0) {
    mw_buf set = {0};
    for (size_t i = 0; i < fs.n; i++) emit(&fs, i, s, &set, a);
    mw_diag diag = {0};
    if (set.oom) {
      snprintf(err, errlen, "out of memory");
      rc = MW_REFLECT_LOCAL;
    } else if (set.len && mw_schema_add_set(s, set.p, set.len, "server reflection", &diag) != 0) {
      snprintf(err, errlen, "%s", diag.n && diag.msgs[0] ? diag.msgs[0] : "bad descriptors");
      rc = MW_REFLECT_LOCAL;
    }
    mw_diag_free(&diag);
    mw_buf_free(&set);
  }
  if (a) upb_Arena_Free(a);
  fileset_free(&fs);
  return rc;
}
