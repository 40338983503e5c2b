/* REST transcoding (codec/mw_transcode.h): the route table and the
 * mapping of HTTP requests to gRPC calls and back. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec/mw_json_internal.h"
#include "codec/mw_transcode.h"
#include "upb/decode.h"
#include "upb/encode.h"
#include "upb/msg.h"
#include "upb/reflection.h"

/* The google.api.http extension of google.protobuf.MethodOptions. */
#define HTTP_EXTENSION 72295728u
/* Variables and segments a template may have. */
#define MAX_SEGS 64
#define MAX_VARS 16
/* Nesting of field paths (a.b.c) in templates and query keys. */
#define MAX_FIELD_DEPTH 16

enum { SEG_LIT, SEG_STAR, SEG_DSTAR };
enum { BODY_NONE, BODY_STAR, BODY_FIELD };

typedef struct {
  int kind;
  char *lit; /* SEG_LIT: the literal, percent-decoded */
} tseg;

typedef struct {
  char *name; /* the field path as written */
  const upb_FieldDef *chain[MAX_FIELD_DEPTH];
  int depth;
  int start, end; /* the segments [start, end) it covers */
  bool multi;     /* more than one segment, or "**": %2F stays escaped */
} tvar;

struct mw_transcode_route {
  char *http_method;
  char *template_text;
  tseg segs[MAX_SEGS];
  int n_segs;
  char *verb; /* NULL: none */
  tvar vars[MAX_VARS];
  int n_vars;
  const upb_MethodDef *method;
  char *grpc_path;
  int body_kind;
  const upb_FieldDef *body_field;
  const upb_FieldDef *response_field;
  const char *origin; /* "option" or "config", for messages */
};

struct mw_transcode {
  upb_Arena *arena; /* everything below lives in it */
  const upb_DefPool *pool;
  mw_transcode_route **routes;
  size_t n, cap;
};

/* ---- small helpers ------------------------------------------------------- */

static char *adup(upb_Arena *a, const char *s, size_t n) {
  char *d = upb_Arena_Malloc(a, n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static int hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into out (room for n + 1): '+' as space when
 * plus_space (query strings), %2F/%2f left as they are when keep_slash
 * (multi-segment variables). Returns the length, or -1 on a bad escape. */
static long pct_decode(const char *s, size_t n, char *out, bool plus_space, bool keep_slash) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= n) return -1;
      int h = hexv(s[i + 1]), l = hexv(s[i + 2]);
      if (h < 0 || l < 0) return -1;
      char d = (char)(h * 16 + l);
      if (keep_slash && d == '/') {
        memcpy(out + o, s + i, 3);
        o += 3;
      } else {
        out[o++] = d;
      }
      i += 2;
    } else if (c == '+' && plus_space) {
      out[o++] = ' ';
    } else {
      out[o++] = c;
    }
  }
  out[o] = '\0';
  return (long)o;
}

static void err_set(mw_transcode_error *e, int http, int code, const char *fmt, ...) {
  if (!e) return;
  e->http_status = http;
  e->code = code;
  e->allow[0] = '\0';
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
}

/* A field of m by .proto name, or by JSON name. */
static const upb_FieldDef *find_field(const upb_MessageDef *m, const char *s, size_t n) {
  const upb_FieldDef *f = upb_MessageDef_FindFieldByNameWithSize(m, s, n);
  if (!f) f = upb_MessageDef_FindByJsonNameWithSize(m, s, n);
  return f;
}

/* Whether a leaf field can take a value from text (a path variable or a
 * query parameter): scalars, enums, and well-known types with a string
 * form. */
static bool text_leaf(const upb_FieldDef *f) {
  if (upb_FieldDef_IsMap(f)) return false;
  if (upb_FieldDef_CType(f) != kUpb_CType_Message) return true;
  switch (upb_MessageDef_WellKnownType(upb_FieldDef_MessageSubDef(f))) {
    case kUpb_WellKnown_Unspecified:
    case kUpb_WellKnown_Any:
    case kUpb_WellKnown_Struct:
    case kUpb_WellKnown_ListValue:
    case kUpb_WellKnown_Value:
      return false;
    default:
      return true;
  }
}

/* Resolves "a.b.c" in m: intermediate fields singular messages, the leaf
 * anything (the caller checks it). Returns the depth, or -1 with why set. */
static int resolve_path(const upb_MessageDef *m, const char *path, size_t len,
                        const upb_FieldDef **chain, const char **why) {
  int depth = 0;
  size_t i = 0;
  while (i <= len) {
    size_t j = i;
    while (j < len && path[j] != '.') j++;
    if (j == i) {
      *why = "an empty field name";
      return -1;
    }
    if (depth == MAX_FIELD_DEPTH) {
      *why = "too deep a field path";
      return -1;
    }
    if (!m) {
      *why = "a field inside a field that is not a message";
      return -1;
    }
    const upb_FieldDef *f = find_field(m, path + i, j - i);
    if (!f) {
      *why = "a field the message lacks";
      return -1;
    }
    chain[depth++] = f;
    bool last = j >= len;
    if (!last) {
      if (upb_FieldDef_IsRepeated(f) || upb_FieldDef_CType(f) != kUpb_CType_Message) {
        *why = "a path through a repeated or non-message field";
        return -1;
      }
      m = upb_FieldDef_MessageSubDef(f);
    }
    i = j + 1;
  }
  return depth;
}

/* ---- templates ------------------------------------------------------------- */

static bool valid_literal(const char *s, size_t n) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '/' || c == '{' || c == '}' || c == '*' || c == '?' || c == '#' || c == ' ' ||
        (unsigned char)c < 0x21 || (unsigned char)c >= 0x7f)
      return false;
  }
  return true;
}

/* Parses the segments of a template part s[0..n) (a, *, ** between
 * slashes), appending to r;
 * inside a variable when in_var. Returns 0 or -1 with why. */
static int parse_segments(mw_transcode_route *r, upb_Arena *a, const char *s, size_t n, bool in_var,
                          const char **why) {
  size_t i = 0;
  while (i <= n) {
    size_t j = i;
    while (j < n && s[j] != '/') j++;
    const char *seg = s + i;
    size_t len = j - i;
    if (r->n_segs == MAX_SEGS) {
      *why = "too many segments";
      return -1;
    }
    tseg *t = &r->segs[r->n_segs];
    if (len == 1 && seg[0] == '*') {
      t->kind = SEG_STAR;
    } else if (len == 2 && seg[0] == '*' && seg[1] == '*') {
      t->kind = SEG_DSTAR;
    } else if (len > 0 && seg[0] == '{') {
      if (in_var) {
        *why = "a variable inside a variable";
        return -1;
      }
      *why = "an unclosed '{'";
      return -1;
    } else {
      if (!valid_literal(seg, len)) {
        *why = len == 0 ? "an empty segment" : "a segment with characters a literal cannot have";
        return -1;
      }
      char *lit = upb_Arena_Malloc(a, len + 1);
      if (!lit || pct_decode(seg, len, lit, false, false) < 0) {
        *why = "a bad %-escape in a literal";
        return -1;
      }
      t->kind = SEG_LIT;
      t->lit = lit;
    }
    r->n_segs++;
    i = j + 1;
  }
  return 0;
}

/* Parses the template text of r (r->template_text) against the request
 * type. Returns 0 or -1 with why (static text) and detail (a field path). */
static int parse_template(mw_transcode_route *r, upb_Arena *a, const upb_MessageDef *in,
                          const char **why, const char **detail) {
  const char *t = r->template_text;
  size_t n = strlen(t);
  *detail = NULL;
  if (n == 0 || t[0] != '/') {
    *why = "it does not start with '/'";
    return -1;
  }
  if (n == 1) {
    *why = "it has no segment";
    return -1;
  }
  /* the verb: a ':' after the last '/' outside braces */
  int depth = 0;
  size_t last_slash = 0, colon = 0;
  for (size_t i = 0; i < n; i++) {
    if (t[i] == '{')
      depth++;
    else if (t[i] == '}')
      depth--;
    else if (depth == 0 && t[i] == '/')
      last_slash = i, colon = 0;
    else if (depth == 0 && t[i] == ':' && !colon)
      colon = i;
    if (depth < 0 || depth > 1) {
      *why = depth < 0 ? "an unmatched '}'" : "a variable inside a variable";
      return -1;
    }
  }
  if (depth != 0) {
    *why = "an unclosed '{'";
    return -1;
  }
  size_t body_end = n;
  if (colon && colon > last_slash) {
    if (!valid_literal(t + colon + 1, n - colon - 1) || memchr(t + colon + 1, ':', n - colon - 1)) {
      *why = "a verb that is not a literal";
      return -1;
    }
    r->verb = adup(a, t + colon + 1, n - colon - 1);
    body_end = colon;
  }
  /* segments, variables in braces */
  size_t i = 1;
  while (i <= body_end) {
    size_t j = i;
    if (i < body_end && t[i] == '{') {
      size_t close = i;
      while (close < body_end && t[close] != '}') close++;
      if (close >= body_end) {
        *why = "an unclosed '{'";
        return -1;
      }
      const char *inner = t + i + 1;
      size_t ilen = close - i - 1;
      const char *eq = memchr(inner, '=', ilen);
      size_t plen = eq ? (size_t)(eq - inner) : ilen;
      if (r->n_vars == MAX_VARS) {
        *why = "too many variables";
        return -1;
      }
      tvar *v = &r->vars[r->n_vars];
      v->name = adup(a, inner, plen);
      *detail = v->name;
      const char *fwhy;
      v->depth = resolve_path(in, inner, plen, v->chain, &fwhy);
      if (v->depth < 0) {
        *why = fwhy;
        return -1;
      }
      const upb_FieldDef *leaf = v->chain[v->depth - 1];
      if (upb_FieldDef_IsRepeated(leaf) || !text_leaf(leaf)) {
        *why = "a path variable bound to a repeated, map or message field";
        return -1;
      }
      for (int k = 0; k < r->n_vars; k++) {
        if (strcmp(r->vars[k].name, v->name) == 0) {
          *why = "the same field bound twice";
          return -1;
        }
      }
      v->start = r->n_segs;
      if (eq) {
        if (parse_segments(r, a, eq + 1, ilen - plen - 1, true, why) != 0) return -1;
      } else {
        r->segs[r->n_segs++].kind = SEG_STAR;
      }
      v->end = r->n_segs;
      v->multi = v->end - v->start > 1 || r->segs[v->end - 1].kind == SEG_DSTAR;
      r->n_vars++;
      *detail = NULL;
      j = close + 1;
      if (j < body_end && t[j] != '/') {
        *why = "text after a variable in the same segment";
        return -1;
      }
    } else {
      while (j < body_end && t[j] != '/') j++;
      if (memchr(t + i, '{', j - i) || memchr(t + i, '}', j - i)) {
        *why = "a segment mixing a literal and a variable";
        return -1;
      }
      if (parse_segments(r, a, t + i, j - i, false, why) != 0) return -1;
    }
    i = j + 1;
  }
  for (int k = 0; k < r->n_segs; k++) {
    if (r->segs[k].kind == SEG_DSTAR && k != r->n_segs - 1) {
      *why = "'**' before the last segment";
      return -1;
    }
  }
  return 0;
}

/* ---- building the table ------------------------------------------------------ */

typedef struct {
  const char *method, *path, *body, *response_body;
} rule_parts;

static bool str_eq_n(const char *a, const char *b, size_t n) {
  return strlen(b) == n && memcmp(a, b, n) == 0;
}

/* Two routes that match the same requests: the same method (or "*"), the
 * same segments kind by kind with equal literals, the same verb. */
static bool same_shape(const mw_transcode_route *x, const mw_transcode_route *y) {
  if (strcmp(x->http_method, y->http_method) != 0 && strcmp(x->http_method, "*") != 0 &&
      strcmp(y->http_method, "*") != 0)
    return false;
  if (x->n_segs != y->n_segs || !x->verb != !y->verb) return false;
  if (x->verb && strcmp(x->verb, y->verb) != 0) return false;
  for (int i = 0; i < x->n_segs; i++) {
    if (x->segs[i].kind != y->segs[i].kind) return false;
    if (x->segs[i].kind == SEG_LIT && strcmp(x->segs[i].lit, y->segs[i].lit) != 0) return false;
  }
  return true;
}

static int add_route(mw_transcode *t, const upb_MethodDef *md, const rule_parts *p,
                     const char *origin, mw_diag *diag) {
  upb_Arena *a = t->arena;
  const char *mname = upb_MethodDef_FullName(md);
  mw_transcode_route *r = upb_Arena_Malloc(a, sizeof *r);
  if (!r) {
    mw_diag_add(diag, "http rules: out of memory");
    return -1;
  }
  memset(r, 0, sizeof *r);
  r->http_method = adup(a, p->method, strlen(p->method));
  r->template_text = adup(a, p->path, strlen(p->path));
  r->method = md;
  r->origin = origin;
  const upb_ServiceDef *sd = upb_MethodDef_Service(md);
  size_t gl = strlen(upb_ServiceDef_FullName(sd)) + strlen(upb_MethodDef_Name(md)) + 3;
  r->grpc_path = upb_Arena_Malloc(a, gl);
  if (!r->http_method || !r->template_text || !r->grpc_path) {
    mw_diag_add(diag, "http rules: out of memory");
    return -1;
  }
  snprintf(r->grpc_path, gl, "/%s/%s", upb_ServiceDef_FullName(sd), upb_MethodDef_Name(md));
  if (upb_MethodDef_ClientStreaming(md)) {
    mw_diag_add(diag, "http rule of %s (%s) %s %s: a client-streaming method has no REST form",
                mname, origin, p->method, p->path);
    return -1;
  }
  if (r->http_method[0] == '\0') {
    mw_diag_add(diag,
                "http rule of %s (%s): no HTTP method (get, put, post, delete, patch or custom)",
                mname, origin);
    return -1;
  }
  const char *why, *detail;
  const upb_MessageDef *in = upb_MethodDef_InputType(md);
  if (parse_template(r, a, in, &why, &detail) != 0) {
    if (detail)
      mw_diag_add(diag, "http rule of %s (%s): template '%s': variable '%s': %s", mname, origin,
                  p->path, detail, why);
    else
      mw_diag_add(diag, "http rule of %s (%s): template '%s': %s", mname, origin, p->path, why);
    return -1;
  }
  const char *body = p->body ? p->body : "";
  if (strcmp(body, "*") == 0) {
    r->body_kind = BODY_STAR;
  } else if (body[0]) {
    r->body_kind = BODY_FIELD;
    r->body_field = upb_MessageDef_FindFieldByName(in, body);
    if (!r->body_field) {
      mw_diag_add(diag, "http rule of %s (%s): body '%s' is not a field of %s", mname, origin, body,
                  upb_MessageDef_FullName(in));
      return -1;
    }
    for (int k = 0; k < r->n_vars; k++) {
      /* {book.name} with body "book" is the usual update: the path sets
       * one field of the body's message; the same field twice is not */
      if (r->vars[k].depth == 1 && r->vars[k].chain[0] == r->body_field) {
        mw_diag_add(diag, "http rule of %s (%s): body '%s' is also bound by the path ('%s')", mname,
                    origin, body, r->vars[k].name);
        return -1;
      }
    }
  }
  if (r->body_kind != BODY_NONE && strcmp(r->http_method, "GET") == 0) {
    mw_diag_add(diag, "http rule of %s (%s): GET %s cannot have a body", mname, origin, p->path);
    return -1;
  }
  if (p->response_body && p->response_body[0]) {
    const upb_MessageDef *out = upb_MethodDef_OutputType(md);
    r->response_field = upb_MessageDef_FindFieldByName(out, p->response_body);
    if (!r->response_field) {
      mw_diag_add(diag, "http rule of %s (%s): response_body '%s' is not a field of %s", mname,
                  origin, p->response_body, upb_MessageDef_FullName(out));
      return -1;
    }
  }
  for (size_t i = 0; i < t->n; i++) {
    if (same_shape(t->routes[i], r)) {
      const mw_transcode_route *o = t->routes[i];
      mw_diag_add(diag, "http rules: %s %s (%s, %s) and %s %s (%s, %s) match the same requests",
                  o->http_method, o->template_text, upb_MethodDef_FullName(o->method), o->origin,
                  r->http_method, r->template_text, mname, origin);
      return -1;
    }
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 16;
    mw_transcode_route **nr =
        upb_Arena_Realloc(a, t->routes, t->cap * sizeof *nr, cap * sizeof *nr);
    if (!nr) {
      mw_diag_add(diag, "http rules: out of memory");
      return -1;
    }
    t->routes = nr;
    t->cap = cap;
  }
  t->routes[t->n++] = r;
  return 0;
}

/* ---- HttpRule from the wire (MethodOptions' unknown fields) ---- */

typedef struct {
  const char *p, *end;
} wire;

static bool wire_varint(wire *w, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (w->p >= w->end) return false;
    uint8_t b = (uint8_t)*w->p++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

/* Next field: number, wire type, and for length-delimited the bytes. Other
 * wire types are skipped over. */
static int wire_next(wire *w, uint32_t *num, const char **data, size_t *len) {
  for (;;) {
    if (w->p >= w->end) return 0;
    uint64_t tag, v;
    if (!wire_varint(w, &tag)) return -1;
    *num = (uint32_t)(tag >> 3);
    switch (tag & 7) {
      case 0:
        if (!wire_varint(w, &v)) return -1;
        continue;
      case 1:
        if (w->end - w->p < 8) return -1;
        w->p += 8;
        continue;
      case 5:
        if (w->end - w->p < 4) return -1;
        w->p += 4;
        continue;
      case 2:
        if (!wire_varint(w, &v) || v > (uint64_t)(w->end - w->p)) return -1;
        *data = w->p;
        *len = (size_t)v;
        w->p += v;
        return 1;
      default:
        return -1;
    }
  }
}

static const char *wire_str(upb_Arena *a, const char *d, size_t n) { return adup(a, d, n); }

/* One HttpRule message: its pattern and bodies into p; additional bindings
 * are handed back (at most 64). */
static int parse_http_rule(upb_Arena *a, const char *d, size_t n, rule_parts *p, const char **extra,
                           size_t *extra_len, size_t *n_extra) {
  wire w = {d, d + n};
  uint32_t num;
  const char *v;
  size_t vl;
  int rc;
  memset(p, 0, sizeof *p);
  p->method = "";
  p->path = "";
  while ((rc = wire_next(&w, &num, &v, &vl)) == 1) {
    switch (num) {
      case 2:
        p->method = "GET";
        p->path = wire_str(a, v, vl);
        break;
      case 3:
        p->method = "PUT";
        p->path = wire_str(a, v, vl);
        break;
      case 4:
        p->method = "POST";
        p->path = wire_str(a, v, vl);
        break;
      case 5:
        p->method = "DELETE";
        p->path = wire_str(a, v, vl);
        break;
      case 6:
        p->method = "PATCH";
        p->path = wire_str(a, v, vl);
        break;
      case 7:
        p->body = wire_str(a, v, vl);
        break;
      case 12:
        p->response_body = wire_str(a, v, vl);
        break;
      case 8: {
        wire c = {v, v + vl};
        uint32_t cn;
        const char *cv;
        size_t cl;
        int crc;
        while ((crc = wire_next(&c, &cn, &cv, &cl)) == 1) {
          if (cn == 1) p->method = wire_str(a, cv, cl);
          if (cn == 2) p->path = wire_str(a, cv, cl);
        }
        if (crc < 0) return -1;
        break;
      }
      case 11:
        if (extra && *n_extra < 64) {
          extra[*n_extra] = v;
          extra_len[*n_extra] = vl;
          (*n_extra)++;
        }
        break;
      default:
        break;
    }
    if (!p->method || !p->path) return -1;
  }
  return rc < 0 ? -1 : 0;
}

/* The google.api.http option of md, if any: its serialized HttpRule. */
static bool method_http_option(const upb_MethodDef *md, const char **d, size_t *n) {
  if (!upb_MethodDef_HasOptions(md)) return false;
  size_t len;
  const char *unk = upb_Message_GetUnknown((const upb_Message *)upb_MethodDef_Options(md), &len);
  if (!unk || len == 0) return false;
  wire w = {unk, unk + len};
  uint32_t num;
  const char *v;
  size_t vl;
  bool found = false;
  while (wire_next(&w, &num, &v, &vl) == 1) {
    if (num == HTTP_EXTENSION) {
      *d = v; /* the last one wins, as for any singular field */
      *n = vl;
      found = true;
    }
  }
  return found;
}

static int add_option_rules(mw_transcode *t, const upb_MethodDef *md, mw_diag *diag) {
  const char *d;
  size_t n;
  if (!method_http_option(md, &d, &n)) return 0;
  const char *extra[64];
  size_t extra_len[64], n_extra = 0;
  rule_parts p;
  if (parse_http_rule(t->arena, d, n, &p, extra, extra_len, &n_extra) != 0) {
    mw_diag_add(diag, "http option of %s: malformed google.api.HttpRule",
                upb_MethodDef_FullName(md));
    return -1;
  }
  int rc = add_route(t, md, &p, "option", diag);
  for (size_t i = 0; i < n_extra; i++) {
    rule_parts q;
    if (parse_http_rule(t->arena, extra[i], extra_len[i], &q, NULL, NULL, NULL) != 0) {
      mw_diag_add(diag, "http option of %s: malformed additional_bindings",
                  upb_MethodDef_FullName(md));
      rc = -1;
      continue;
    }
    if (add_route(t, md, &q, "option", diag) != 0) rc = -1;
  }
  return rc;
}

/* The served method a selector names ("pkg.Service.Method"). */
static const upb_MethodDef *find_method(const upb_ServiceDef *const *services, size_t n,
                                        const char *sel) {
  const char *dot = strrchr(sel, '.');
  if (!dot) return NULL;
  for (size_t i = 0; i < n; i++) {
    const char *sn = upb_ServiceDef_FullName(services[i]);
    if (str_eq_n(sel, sn, (size_t)(dot - sel)))
      return upb_ServiceDef_FindMethodByName(services[i], dot + 1);
  }
  return NULL;
}

static const char *upper_method(const char *m) {
  static const char *const known[] = {"GET", "PUT", "POST", "DELETE", "PATCH"};
  static const char *const lower[] = {"get", "put", "post", "delete", "patch"};
  for (int i = 0; i < 5; i++)
    if (strcmp(m, lower[i]) == 0) return known[i];
  return m;
}

mw_transcode *mw_transcode_build(const upb_DefPool *pool, const upb_ServiceDef *const *services,
                                 size_t n_services, const mw_transcode_rule *rules, size_t n_rules,
                                 mw_diag *diag) {
  mw_transcode *t = calloc(1, sizeof *t);
  if (!t || !(t->arena = upb_Arena_New())) {
    free(t);
    mw_diag_add(diag, "http rules: out of memory");
    return NULL;
  }
  t->pool = pool;
  int rc = 0;
  /* Methods a config rule names keep only the config's rules. */
  const upb_MethodDef **overridden = NULL;
  if (n_rules) {
    overridden = calloc(n_rules, sizeof *overridden);
    if (!overridden) {
      mw_diag_add(diag, "http rules: out of memory");
      mw_transcode_free(t);
      return NULL;
    }
  }
  for (size_t i = 0; i < n_rules; i++) {
    const mw_transcode_rule *ru = &rules[i];
    const upb_MethodDef *md = ru->selector ? find_method(services, n_services, ru->selector) : NULL;
    if (!md) {
      mw_diag_add(diag,
                  "http.rules[%zu]: selector '%s' names no served method (pkg.Service.Method)", i,
                  ru->selector ? ru->selector : "");
      rc = -1;
      continue;
    }
    overridden[i] = md;
  }
  for (size_t s = 0; s < n_services; s++) {
    const upb_ServiceDef *sd = services[s];
    for (int m = 0; m < upb_ServiceDef_MethodCount(sd); m++) {
      const upb_MethodDef *md = upb_ServiceDef_Method(sd, m);
      bool over = false;
      for (size_t i = 0; i < n_rules; i++)
        if (overridden[i] == md) over = true;
      if (!over && add_option_rules(t, md, diag) != 0) rc = -1;
    }
  }
  for (size_t i = 0; i < n_rules; i++) {
    if (!overridden[i]) continue;
    const mw_transcode_rule *ru = &rules[i];
    for (size_t k = 0; k <= ru->n_additional; k++) {
      const mw_transcode_rule *b = k == 0 ? ru : &ru->additional[k - 1];
      rule_parts p = {b->method ? upper_method(b->method) : "", b->path ? b->path : "", b->body,
                      b->response_body};
      if (add_route(t, overridden[i], &p, "config", diag) != 0) rc = -1;
    }
  }
  free(overridden);
  if (rc != 0) {
    mw_transcode_free(t);
    return NULL;
  }
  return t;
}

void mw_transcode_free(mw_transcode *t) {
  if (!t) return;
  if (t->arena) upb_Arena_Free(t->arena);
  free(t);
}

size_t mw_transcode_route_count(const mw_transcode *t) { return t ? t->n : 0; }
const mw_transcode_route *mw_transcode_route_at(const mw_transcode *t, size_t i) {
  return t && i < t->n ? t->routes[i] : NULL;
}
const char *mw_transcode_route_http_method(const mw_transcode_route *r) { return r->http_method; }
const char *mw_transcode_route_template(const mw_transcode_route *r) { return r->template_text; }
const upb_MethodDef *mw_transcode_route_method(const mw_transcode_route *r) { return r->method; }
const char *mw_transcode_route_grpc_path(const mw_transcode_route *r) { return r->grpc_path; }

/* ---- matching ------------------------------------------------------------- */

typedef struct {
  const char *s;
  size_t len;
} span;

#define MAX_PATH_SEGS 128

/* Whether r matches the path segments; *bind gets each segment range of
 * its variables (start, end in segs). The last segment may carry the verb. */
static bool route_matches(const mw_transcode_route *r, const span *segs, int n, int *var_start,
                          int *var_end, span *last_trimmed) {
  span last = n > 0 ? segs[n - 1] : (span){NULL, 0};
  if (r->verb) {
    size_t vl = strlen(r->verb);
    if (n == 0 || last.len < vl + 1 || last.s[last.len - vl - 1] != ':' ||
        memcmp(last.s + last.len - vl, r->verb, vl) != 0)
      return false;
    last.len -= vl + 1;
  }
  *last_trimmed = last;
  int pi = 0;
  for (int i = 0; i < r->n_segs; i++) {
    const tseg *t = &r->segs[i];
    if (t->kind == SEG_DSTAR) {
      pi = n;
      break;
    }
    if (pi >= n) return false;
    span s = pi == n - 1 ? last : segs[pi];
    if (t->kind == SEG_LIT) {
      char buf[512];
      if (s.len >= sizeof buf) return false;
      long dl = pct_decode(s.s, s.len, buf, false, false);
      if (dl < 0 || (size_t)dl != strlen(t->lit) || memcmp(buf, t->lit, (size_t)dl) != 0)
        return false;
    } else if (s.len == 0) {
      return false; /* '*' matches one non-empty segment */
    }
    pi++;
  }
  if (pi != n) return false;
  /* variables: segment ranges (a "**" to the end) */
  for (int v = 0; v < r->n_vars; v++) {
    var_start[v] = r->vars[v].start;
    var_end[v] = r->segs[r->vars[v].end - 1].kind == SEG_DSTAR ? n : r->vars[v].end;
  }
  return true;
}

/* Specificity: <0 when a is less specific than b. */
static int specificity(const mw_transcode_route *a, const mw_transcode_route *b) {
  int n = a->n_segs < b->n_segs ? a->n_segs : b->n_segs;
  for (int i = 0; i < n; i++) {
    /* SEG_LIT 0 < SEG_STAR 1 < SEG_DSTAR 2: lower kind is more specific */
    if (a->segs[i].kind != b->segs[i].kind) return b->segs[i].kind - a->segs[i].kind;
  }
  if (!a->verb != !b->verb) return a->verb ? 1 : -1;
  if (a->n_segs != b->n_segs) return a->n_segs - b->n_segs;
  return strcmp(a->http_method, "*") == 0 ? -1 : strcmp(b->http_method, "*") == 0 ? 1 : 0;
}

static bool method_ok(const mw_transcode_route *r, const char *m) {
  return strcmp(r->http_method, "*") == 0 || strcmp(r->http_method, m) == 0;
}

/* Sets the field chain of a variable or query key to text (decoded). */
static int set_path_value(upb_Message *msg, const upb_FieldDef *const *chain, int depth,
                          const char *text, size_t len, const upb_DefPool *pool, upb_Arena *a,
                          char *err, size_t errlen, mw_json_status *st) {
  for (int i = 0; i < depth - 1; i++) {
    msg = upb_Message_Mutable(msg, chain[i], a).msg;
    if (!msg) {
      snprintf(err, errlen, "out of memory");
      *st = MW_JSON_NOMEM;
      return -1;
    }
  }
  *st = mw_json_field_from_text(msg, chain[depth - 1], text, len, pool, a, err, errlen);
  return *st == MW_JSON_OK ? 0 : -1;
}

static bool is_json_type(const char *ct) {
  if (!ct || !*ct) return true;
  while (*ct == ' ') ct++;
  size_t n = strcspn(ct, ";");
  while (n > 0 && ct[n - 1] == ' ') n--;
  if (n == 16 && strncasecmp(ct, "application/json", 16) == 0) return true;
  /* application/<anything>+json */
  return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
         strncasecmp(ct + n - 5, "+json", 5) == 0;
}

static bool blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
  return true;
}

/* Whether the field chain (of a query key) is bound by the route's path or
 * covered by its body. */
static const char *bound_by(const mw_transcode_route *r, const upb_FieldDef *const *chain,
                            int depth) {
  if (r->body_kind == BODY_FIELD && chain[0] == r->body_field) return "the body";
  for (int v = 0; v < r->n_vars; v++) {
    const tvar *tv = &r->vars[v];
    int n = tv->depth < depth ? tv->depth : depth;
    bool prefix = true;
    for (int i = 0; i < n; i++)
      if (tv->chain[i] != chain[i]) prefix = false;
    if (prefix) return "the path";
  }
  return NULL;
}

static int json_status_http(mw_json_status st) {
  return st == MW_JSON_TOO_LARGE ? 413 : st == MW_JSON_NOMEM ? 500 : 400;
}

static int json_status_code(mw_json_status st) {
  return st == MW_JSON_TOO_LARGE ? 8 : st == MW_JSON_NOMEM ? 8 : 3;
}

int mw_transcode_match(const mw_transcode *t, const char *http_method, const char *path,
                       size_t path_len, const char *query, size_t query_len, const char *body,
                       size_t body_len, const char *content_type, int options,
                       const mw_json_limits *limits, upb_Arena *a, mw_transcode_call *out,
                       mw_transcode_error *err) {
  memset(out, 0, sizeof *out);
  if (!query) {
    const char *q = memchr(path, '?', path_len);
    if (q) {
      query = q + 1;
      query_len = path_len - (size_t)(q + 1 - path);
      path_len = (size_t)(q - path);
    }
  }
  if (!query) query_len = 0;
  if (path_len == 0 || path[0] != '/') {
    err_set(err, 400, 3, "the path does not start with '/'");
    return -1;
  }
  span segs[MAX_PATH_SEGS];
  int n = 0;
  for (size_t i = 1; i <= path_len;) {
    size_t j = i;
    while (j < path_len && path[j] != '/') j++;
    if (n == MAX_PATH_SEGS) {
      err_set(err, 404, 5, "no route for %s (more than %d segments)", http_method, MAX_PATH_SEGS);
      return -1;
    }
    segs[n].s = path + i;
    segs[n].len = j - i;
    n++;
    i = j + 1;
  }
  /* "/a/b/" has an empty last segment: not the same path as "/a/b" */
  const mw_transcode_route *best = NULL;
  int best_start[MAX_VARS], best_end[MAX_VARS];
  span best_last = {NULL, 0};
  char allow[64] = "";
  size_t allow_len = 0;
  bool other_method = false;
  for (size_t i = 0; t && i < t->n; i++) {
    const mw_transcode_route *r = t->routes[i];
    int vs[MAX_VARS], ve[MAX_VARS];
    span last;
    if (!route_matches(r, segs, n, vs, ve, &last)) continue;
    if (!method_ok(r, http_method)) {
      other_method = true;
      if (!strstr(allow, r->http_method) && allow_len + strlen(r->http_method) + 3 < sizeof allow)
        allow_len += (size_t)snprintf(allow + allow_len, sizeof allow - allow_len, "%s%s",
                                      allow_len ? ", " : "", r->http_method);
      continue;
    }
    if (!best || specificity(r, best) > 0) {
      best = r;
      memcpy(best_start, vs, sizeof vs);
      memcpy(best_end, ve, sizeof ve);
      best_last = last;
    }
  }
  if (!best) {
    if (other_method) {
      err_set(err, 405, 12, "method %s not allowed for %.*s", http_method,
              (int)(path_len > 200 ? 200 : path_len), path);
      if (err) snprintf(err->allow, sizeof err->allow, "%s", allow);
    } else {
      err_set(err, 404, 5, "no route for %s %.*s", http_method,
              (int)(path_len > 200 ? 200 : path_len), path);
    }
    return -1;
  }
  const mw_transcode_route *r = best;
  const upb_MessageDef *in = upb_MethodDef_InputType(r->method);
  upb_Message *msg = upb_Message_New(in, a);
  if (!msg) {
    err_set(err, 500, 8, "out of memory");
    return -1;
  }
  char jerr[256];
  mw_json_status st;
  int jopts = (options & MW_TRANSCODE_IGNORE_UNKNOWN_FIELDS) ? MW_JSON_IGNORE_UNKNOWN : 0;
  mw_json_limits body_limits = {limits ? limits->max_in_bytes : 0, 0,
                                limits ? limits->max_depth : 0};
  /* the body first: the path's values then win over anything it says */
  if (r->body_kind == BODY_NONE) {
    if (!blank(body, body_len)) {
      err_set(err, 400, 3, "%s %s takes no request body", r->http_method, r->template_text);
      return -1;
    }
  } else if (!blank(body, body_len)) {
    if (!is_json_type(content_type)) {
      err_set(err, 415, 3, "the request body must be JSON (Content-Type: application/json), not %s",
              content_type);
      return -1;
    }
    st = r->body_kind == BODY_STAR
             ? mw_json_decode_msg(body, body_len, msg, in, t->pool, jopts, &body_limits, a, jerr,
                                  sizeof jerr)
             : mw_json_decode_field(body, body_len, msg, r->body_field, t->pool, jopts,
                                    &body_limits, a, jerr, sizeof jerr);
    if (st != MW_JSON_OK) {
      err_set(err, json_status_http(st), json_status_code(st), "request body: %s", jerr);
      return -1;
    }
  }
  /* path variables */
  for (int v = 0; v < r->n_vars; v++) {
    const tvar *tv = &r->vars[v];
    const char *s, *e;
    if (best_end[v] == best_start[v]) {
      /* "**" matching nothing */
      s = e = best_start[v] < n ? segs[best_start[v]].s : path + path_len;
    } else {
      span lastseg = best_end[v] - 1 == n - 1 ? best_last : segs[best_end[v] - 1];
      s = segs[best_start[v]].s;
      e = lastseg.s + lastseg.len;
    }
    size_t raw = (size_t)(e - s);
    char *val = upb_Arena_Malloc(a, raw + 1);
    long dl = val ? pct_decode(s, raw, val, false, tv->multi) : -1;
    if (dl < 0) {
      err_set(err, 400, 3, "path variable '%s': invalid %%-encoding", tv->name);
      return -1;
    }
    if (set_path_value(msg, tv->chain, tv->depth, val, (size_t)dl, t->pool, a, jerr, sizeof jerr,
                       &st) != 0) {
      err_set(err, json_status_http(st), json_status_code(st), "path variable '%s': %s", tv->name,
              jerr);
      return -1;
    }
  }
  /* query parameters */
  if (query_len && r->body_kind == BODY_STAR && !blank(query, query_len)) {
    err_set(err, 400, 3, "%s %s takes no query parameters (its body is the whole request)",
            r->http_method, r->template_text);
    return -1;
  }
  /* the field chains given so far, to refuse a second value for a
   * singular field (a.x and b.x of one type are different fields) */
  typedef struct {
    const upb_FieldDef *chain[MAX_FIELD_DEPTH];
    int depth;
  } given;
  given *seen = NULL;
  size_t n_seen = 0, cap_seen = 0;
  for (size_t i = 0; i < query_len;) {
    size_t j = i;
    while (j < query_len && query[j] != '&') j++;
    const char *kv = query + i;
    size_t kvl = j - i;
    i = j + 1;
    if (kvl == 0) continue;
    const char *eq = memchr(kv, '=', kvl);
    size_t kl = eq ? (size_t)(eq - kv) : kvl;
    char *key = upb_Arena_Malloc(a, kl + 1);
    char *val = upb_Arena_Malloc(a, kvl - kl + 1);
    long klen = key ? pct_decode(kv, kl, key, true, false) : -1;
    long vlen =
        val ? pct_decode(eq ? eq + 1 : kv + kl, eq ? kvl - kl - 1 : 0, val, true, false) : -1;
    if (klen < 0 || vlen < 0) {
      err_set(err, 400, 3, "query parameter '%.*s': invalid %%-encoding", (int)(kl > 64 ? 64 : kl),
              kv);
      return -1;
    }
    const upb_FieldDef *chain[MAX_FIELD_DEPTH];
    const char *why;
    int depth = resolve_path(in, key, (size_t)klen, chain, &why);
    if (depth < 0) {
      if (options & MW_TRANSCODE_IGNORE_UNKNOWN_QUERY) continue;
      err_set(err, 400, 3, "query parameter '%s': names %s (of %s)", key, why,
              upb_MessageDef_FullName(in));
      return -1;
    }
    const upb_FieldDef *leaf = chain[depth - 1];
    if (!text_leaf(leaf)) {
      err_set(err, 400, 3, "query parameter '%s': %s cannot be given in a query", key,
              upb_FieldDef_IsMap(leaf) ? "a map" : "a message field");
      return -1;
    }
    const char *by = bound_by(r, chain, depth);
    if (by) {
      err_set(err, 400, 3, "query parameter '%s': the field is already given by %s", key, by);
      return -1;
    }
    if (!upb_FieldDef_IsRepeated(leaf)) {
      for (size_t k = 0; k < n_seen; k++) {
        if (seen[k].depth == depth &&
            memcmp(seen[k].chain, chain, (size_t)depth * sizeof chain[0]) == 0) {
          err_set(err, 400, 3, "query parameter '%s': given twice for a field that is not repeated",
                  key);
          return -1;
        }
      }
      if (n_seen == cap_seen) {
        size_t nc = cap_seen ? 2 * cap_seen : 8;
        given *ns = upb_Arena_Realloc(a, seen, cap_seen * sizeof *ns, nc * sizeof *ns);
        if (!ns) {
          err_set(err, 500, 8, "out of memory");
          return -1;
        }
        seen = ns;
        cap_seen = nc;
      }
      memcpy(seen[n_seen].chain, chain, (size_t)depth * sizeof chain[0]);
      seen[n_seen++].depth = depth;
    }
    if (set_path_value(msg, chain, depth, val, (size_t)vlen, t->pool, a, jerr, sizeof jerr, &st) !=
        0) {
      err_set(err, json_status_http(st), json_status_code(st), "query parameter '%s': %s", key,
              jerr);
      return -1;
    }
  }
  char *bin = NULL;
  size_t blen = 0;
  if (upb_Encode(msg, upb_MessageDef_MiniTable(in), 0, a, &bin, &blen) != kUpb_EncodeStatus_Ok) {
    err_set(err, 500, 8, "out of memory");
    return -1;
  }
  if (limits && limits->max_out_bytes && blen > limits->max_out_bytes) {
    err_set(err, 413, 8, "the request message is %zu bytes, more than %zu", blen,
            limits->max_out_bytes);
    return -1;
  }
  out->route = r;
  out->method = r->method;
  out->grpc_path = r->grpc_path;
  out->request = bin ? bin : "";
  out->request_len = blen;
  return 0;
}

/* ---- the response side ------------------------------------------------------- */

int mw_transcode_response(const mw_transcode *t, const mw_transcode_call *call, const char *reply,
                          size_t reply_len, int json_options, const mw_json_limits *limits,
                          upb_Arena *a, const char **out, size_t *out_len,
                          mw_transcode_error *err) {
  const mw_transcode_route *r = call->route;
  const upb_MessageDef *m = upb_MethodDef_OutputType(r->method);
  char jerr[256];
  mw_json_status st;
  if (!r->response_field) {
    st = mw_json_from_binary(reply, reply_len, m, t->pool, json_options, limits, a, out, out_len,
                             jerr, sizeof jerr);
  } else {
    upb_Message *msg = upb_Message_New(m, a);
    st = msg ? MW_JSON_OK : MW_JSON_NOMEM;
    if (msg && upb_Decode(reply, reply_len, msg, upb_MessageDef_MiniTable(m), NULL, 0, a) !=
                   kUpb_DecodeStatus_Ok) {
      snprintf(jerr, sizeof jerr, "cannot decode %s", upb_MessageDef_FullName(m));
      st = MW_JSON_INVALID;
    }
    if (st == MW_JSON_OK)
      st = mw_json_encode_field(msg, r->response_field, t->pool, json_options, limits, a, out,
                                out_len, jerr, sizeof jerr);
  }
  if (st != MW_JSON_OK) {
    err_set(err, 500, st == MW_JSON_INVALID ? 13 : 8, "response: %s", jerr);
    return -1;
  }
  return 0;
}

int mw_transcode_http_status(int code) {
  static const int map[] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
                            400, 409, 400, 501, 500, 503, 500, 401};
  return code >= 0 && code <= 16 ? map[code] : 500;
}

int mw_transcode_status_json(const upb_DefPool *pool, int code, const char *message,
                             const char *details_bin, size_t details_len, upb_Arena *a,
                             const char **out, size_t *out_len, int *http_status, char *err,
                             size_t errlen) {
  if (http_status) *http_status = mw_transcode_http_status(code);
  const upb_MessageDef *m = upb_DefPool_FindMessageByName(pool, "google.rpc.Status");
  if (!m) {
    snprintf(err, errlen, "google.rpc.Status is not in the schema");
    return -1;
  }
  upb_Message *msg = upb_Message_New(m, a);
  if (!msg) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  const upb_FieldDef *code_f = upb_MessageDef_FindFieldByNumber(m, 1);
  const upb_FieldDef *msg_f = upb_MessageDef_FindFieldByNumber(m, 2);
  const upb_FieldDef *det_f = upb_MessageDef_FindFieldByNumber(m, 3);
  if (details_bin && details_len &&
      upb_Decode(details_bin, details_len, msg, upb_MessageDef_MiniTable(m), NULL, 0, a) !=
          kUpb_DecodeStatus_Ok)
    upb_Message_Clear(msg, m); /* bad details: the code and message still go out */
  upb_MessageValue v;
  v.int32_val = code;
  upb_Message_Set(msg, code_f, v, a);
  v.str_val.data = message ? message : "";
  v.str_val.size = message ? strlen(message) : 0;
  upb_Message_Set(msg, msg_f, v, a);
  /* Written by hand around the codec's JSON of each part: code, message
   * and details always there (a client reads them without checks), each
   * detail as its Any JSON without defaults. Details the pool cannot show
   * (an Any of an unknown type) are dropped one by one, so that the error
   * itself still reaches the client. */
  const char *mjson;
  size_t mlen;
  if (mw_json_encode_field(msg, msg_f, pool, MW_JSON_EMIT_DEFAULTS, NULL, a, &mjson, &mlen, err,
                           errlen) != MW_JSON_OK)
    return -1;
  const upb_Array *det = upb_Message_Get(msg, det_f).array_val;
  size_t nd = det ? upb_Array_Size(det) : 0;
  const char **parts = upb_Arena_Malloc(a, (nd + 1) * sizeof *parts);
  size_t *plen = upb_Arena_Malloc(a, (nd + 1) * sizeof *plen);
  if (!parts || !plen) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  size_t total = mlen + 48, keep = 0;
  const upb_MessageDef *any_m = upb_FieldDef_MessageSubDef(det_f);
  for (size_t i = 0; i < nd; i++) {
    char e2[64];
    if (mw_json_encode_msg(upb_Array_Get(det, i).msg_val, any_m, pool, 0, NULL, a, &parts[keep],
                           &plen[keep], e2, sizeof e2) == MW_JSON_OK)
      total += plen[keep++] + 1;
  }
  char *buf = upb_Arena_Malloc(a, total);
  if (!buf) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  size_t o = (size_t)snprintf(buf, total, "{\"code\":%d,\"message\":%.*s,\"details\":[", code,
                              (int)mlen, mjson);
  for (size_t i = 0; i < keep; i++) {
    if (i) buf[o++] = ',';
    memcpy(buf + o, parts[i], plen[i]);
    o += plen[i];
  }
  buf[o++] = ']';
  buf[o++] = '}';
  buf[o] = '\0';
  *out = buf;
  *out_len = o;
  return 0;
}
