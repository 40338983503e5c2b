/* JSON (RFC 8259) to and from Lua values: core.json_decode, json_encode,
 * json_null, json_array. Strict, because its input comes from clients
 * (tokens now; request bodies later): no comments, trailing commas, NaN,
 * leading zeros, unescaped control characters, invalid UTF-8 or lone
 * surrogates, and no duplicate object keys (two parsers reading different
 * values out of one document is how signed claims get smuggled). Bounded:
 * a document past max_bytes or nested past max_depth is refused before it
 * costs more. Errors name the byte offset.
 *
 * Values: objects are tables, arrays are tables with 1..n and the
 * moonwire.json.array metatable (so an empty one encodes back as []),
 * null is the json_null sentinel (a light userdata), numbers are integers
 * when written without fraction or exponent and within 64 bits, floats
 * otherwise. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/l_api.h"

#define MW_MT_JSON_ARRAY "moonwire.json.array"
/* Numbers longer than this are refused rather than parsed. */
#define MAX_NUMBER_CHARS 64

static char g_null_tag; /* its address is json_null */

/* ---- decoding ---------------------------------------------------------------- */

typedef struct dec {
  lua_State *L;
  const unsigned char *s, *p, *end;
  int depth, max_depth;
  char *err;
  size_t errlen;
} dec;

static int fail(dec *d, const char *what) {
  if (d->err && !d->err[0])
    snprintf(d->err, d->errlen, "json: at byte %zu: %s", (size_t)(d->p - d->s), what);
  return 0;
}

static void skip_ws(dec *d) {
  while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
    d->p++;
}

static int value(dec *d);

static int hex4(dec *d, unsigned *out) {
  if (d->end - d->p < 4) return fail(d, "truncated \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = d->p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return fail(d, "bad hex digit in \\u escape");
  }
  d->p += 4;
  *out = v;
  return 1;
}

static void put_utf8(luaL_Buffer *b, unsigned cp) {
  char u[4];
  int n;
  if (cp < 0x80) { u[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
  else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
  } else {
    u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
  }
  luaL_addlstring(b, u, (size_t)n);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF), 0 when invalid. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  size_t n;
  unsigned min, cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) { n = 2; min = 0x80; cp = c & 0x1F; }
  else if ((c & 0xF0) == 0xE0) { n = 3; min = 0x800; cp = c & 0x0F; }
  else if ((c & 0xF8) == 0xF0) { n = 4; min = 0x10000; cp = c & 0x07; }
  else return 0;
  if ((size_t)(end - p) < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

/* The string at d->p (just after its opening quote), pushed. */
static int string(dec *d) {
  lua_State *L = d->L;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    const unsigned char *run = d->p;
    while (d->p < d->end && *d->p != '"' && *d->p != '\\' && *d->p >= 0x20) {
      if (*d->p < 0x80) { d->p++; continue; }
      size_t n = utf8_len(d->p, d->end);
      if (!n) { luaL_pushresult(&b); lua_pop(L, 1); return fail(d, "invalid UTF-8 in string"); }
      d->p += n;
    }
    luaL_addlstring(&b, (const char *)run, (size_t)(d->p - run));
    if (d->p >= d->end) { luaL_pushresult(&b); lua_pop(L, 1); return fail(d, "unterminated string"); }
    unsigned char c = *d->p;
    if (c == '"') { d->p++; break; }
    if (c < 0x20) { luaL_pushresult(&b); lua_pop(L, 1); return fail(d, "control character in string"); }
    d->p++; /* backslash */
    if (d->p >= d->end) { luaL_pushresult(&b); lua_pop(L, 1); return fail(d, "unterminated escape"); }
    c = *d->p++;
    const char *simple = NULL;
    switch (c) {
    case '"': simple = "\""; break;
    case '\\': simple = "\\"; break;
    case '/': simple = "/"; break;
    case 'b': simple = "\b"; break;
    case 'f': simple = "\f"; break;
    case 'n': simple = "\n"; break;
    case 'r': simple = "\r"; break;
    case 't': simple = "\t"; break;
    case 'u': {
      unsigned cp, lo;
      if (!hex4(d, &cp)) { luaL_pushresult(&b); lua_pop(L, 1); return 0; }
      if (cp >= 0xDC00 && cp <= 0xDFFF) { luaL_pushresult(&b); lua_pop(L, 1); return fail(d, "lone low surrogate"); }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (d->end - d->p < 2 || d->p[0] != '\\' || d->p[1] != 'u') {
          luaL_pushresult(&b); lua_pop(L, 1); return fail(d, "lone high surrogate");
        }
        d->p += 2;
        if (!hex4(d, &lo)) { luaL_pushresult(&b); lua_pop(L, 1); return 0; }
        if (lo < 0xDC00 || lo > 0xDFFF) { luaL_pushresult(&b); lua_pop(L, 1); return fail(d, "lone high surrogate"); }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      put_utf8(&b, cp);
      break;
    }
    default:
      d->p--;
      luaL_pushresult(&b);
      lua_pop(L, 1);
      return fail(d, "invalid escape");
    }
    if (simple) luaL_addchar(&b, simple[0]);
  }
  luaL_pushresult(&b);
  return 1;
}

static int number(dec *d) {
  const unsigned char *start = d->p;
  int is_float = 0;
  if (d->p < d->end && *d->p == '-') d->p++;
  if (d->p >= d->end) return fail(d, "truncated number");
  if (*d->p == '0') {
    d->p++;
    if (d->p < d->end && *d->p >= '0' && *d->p <= '9') return fail(d, "leading zero in number");
  } else if (*d->p >= '1' && *d->p <= '9') {
    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') d->p++;
  } else {
    return fail(d, "expected a digit");
  }
  if (d->p < d->end && *d->p == '.') {
    is_float = 1;
    d->p++;
    if (d->p >= d->end || *d->p < '0' || *d->p > '9') return fail(d, "expected a digit after '.'");
    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') d->p++;
  }
  if (d->p < d->end && (*d->p == 'e' || *d->p == 'E')) {
    is_float = 1;
    d->p++;
    if (d->p < d->end && (*d->p == '+' || *d->p == '-')) d->p++;
    if (d->p >= d->end || *d->p < '0' || *d->p > '9') return fail(d, "expected a digit in exponent");
    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') d->p++;
  }
  size_t n = (size_t)(d->p - start);
  if (n > MAX_NUMBER_CHARS) { d->p = start; return fail(d, "number too long"); }
  char buf[MAX_NUMBER_CHARS + 1];
  memcpy(buf, start, n);
  buf[n] = 0;
  /* The grammar is checked: Lua's own conversion reads the rest, giving an
   * integer that does not fit 64 bits as a float, as it would in Lua. */
  if (lua_stringtonumber(d->L, buf) == 0) { d->p = start; return fail(d, "bad number"); }
  if (is_float && lua_isinteger(d->L, -1)) {
    lua_Number f = (lua_Number)lua_tointeger(d->L, -1);
    lua_pop(d->L, 1);
    lua_pushnumber(d->L, f);
  }
  if (!lua_isinteger(d->L, -1) && !isfinite(lua_tonumber(d->L, -1))) {
    lua_pop(d->L, 1);
    d->p = start;
    return fail(d, "number out of range");
  }
  return 1;
}

static int literal(dec *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) return fail(d, "unexpected character");
  d->p += n;
  return 1;
}

static int array(dec *d) {
  lua_State *L = d->L;
  lua_newtable(L);
  luaL_setmetatable(L, MW_MT_JSON_ARRAY);
  skip_ws(d);
  if (d->p < d->end && *d->p == ']') { d->p++; return 1; }
  for (lua_Integer i = 1;; i++) {
    if (!value(d)) { lua_pop(L, 1); return 0; }
    lua_rawseti(L, -2, i);
    skip_ws(d);
    if (d->p >= d->end) { lua_pop(L, 1); return fail(d, "unterminated array"); }
    if (*d->p == ',') { d->p++; continue; }
    if (*d->p == ']') { d->p++; return 1; }
    lua_pop(L, 1);
    return fail(d, "expected ',' or ']'");
  }
}

static int object(dec *d) {
  lua_State *L = d->L;
  lua_newtable(L);
  skip_ws(d);
  if (d->p < d->end && *d->p == '}') { d->p++; return 1; }
  for (;;) {
    skip_ws(d);
    if (d->p >= d->end || *d->p != '"') { lua_pop(L, 1); return fail(d, "expected a string key"); }
    const unsigned char *key_at = d->p;
    d->p++;
    if (!string(d)) { lua_pop(L, 1); return 0; }
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) != LUA_TNIL) {
      lua_pop(L, 3);
      d->p = key_at;
      return fail(d, "duplicate key");
    }
    lua_pop(L, 1);
    skip_ws(d);
    if (d->p >= d->end || *d->p != ':') { lua_pop(L, 2); return fail(d, "expected ':'"); }
    d->p++;
    if (!value(d)) { lua_pop(L, 2); return 0; }
    lua_rawset(L, -3);
    skip_ws(d);
    if (d->p >= d->end) { lua_pop(L, 1); return fail(d, "unterminated object"); }
    if (*d->p == ',') { d->p++; continue; }
    if (*d->p == '}') { d->p++; return 1; }
    lua_pop(L, 1);
    return fail(d, "expected ',' or '}'");
  }
}

/* One value at d->p, pushed; 0 with d->err set on error (nothing pushed). */
static int value(dec *d) {
  skip_ws(d);
  if (d->p >= d->end) return fail(d, "unexpected end of input");
  if (!lua_checkstack(d->L, 4)) return fail(d, "out of stack");
  switch (*d->p) {
  case '{':
  case '[': {
    if (++d->depth > d->max_depth) return fail(d, "nested too deep");
    int open = *d->p++;
    int ok = open == '{' ? object(d) : array(d);
    d->depth--;
    return ok;
  }
  case '"': d->p++; return string(d);
  case 't': if (!literal(d, "true", 4)) return 0; lua_pushboolean(d->L, 1); return 1;
  case 'f': if (!literal(d, "false", 5)) return 0; lua_pushboolean(d->L, 0); return 1;
  case 'n': if (!literal(d, "null", 4)) return 0; lua_pushlightuserdata(d->L, &g_null_tag); return 1;
  default:
    if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) return number(d);
    return fail(d, "unexpected character");
  }
}

int mw_ljson_decode(lua_State *L, const char *s, size_t len, int max_depth,
                    char *err, size_t errlen) {
  dec d = {L, (const unsigned char *)s, (const unsigned char *)s,
           (const unsigned char *)s + len, 0, max_depth, err, errlen};
  if (err && errlen) err[0] = 0;
  if (!value(&d)) return 0;
  skip_ws(&d);
  if (d.p != d.end) {
    lua_pop(L, 1);
    return fail(&d, "trailing characters after the value");
  }
  return 1;
}

static int opt_int_field(lua_State *L, int idx, const char *name, int def, int max) {
  if (lua_isnoneornil(L, idx)) return def;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, name);
  lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  if (v < 1 || v > max) luaL_error(L, "json: %s out of range 1..%d", name, max);
  return (int)v;
}

/* core.json_decode(text [, {max_depth=, max_bytes=}]) -> value | nil, err */
static int l_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int max_depth = opt_int_field(L, 2, "max_depth", MW_JSON_DEFAULT_DEPTH, MW_JSON_MAX_DEPTH);
  int max_bytes = opt_int_field(L, 2, "max_bytes", MW_JSON_DEFAULT_BYTES, 0x7fffffff);
  lua_settop(L, 2);
  if (len > (size_t)max_bytes) {
    lua_pushnil(L);
    lua_pushfstring(L, "json: document of %I bytes is over the limit of %d",
                    (lua_Integer)len, max_bytes);
    return 2;
  }
  char err[128];
  if (!mw_ljson_decode(L, s, len, max_depth, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* ---- encoding ------------------------------------------------------------------ */

/* The output grows in a userdata at a fixed stack slot, so a Lua error
 * (out of memory) in the middle leaks nothing. */
typedef struct enc {
  lua_State *L;
  int slot;
  char *p;
  size_t len, cap;
  int depth, max_depth;
  const char *err; /* first error, static text */
  int err_depth;
} enc;

static void reserve(enc *e, size_t more) {
  if (e->len + more <= e->cap) return;
  size_t cap = e->cap ? e->cap : 256;
  while (cap < e->len + more) cap *= 2;
  char *p = lua_newuserdatauv(e->L, cap, 0);
  if (e->len) memcpy(p, e->p, e->len);
  lua_replace(e->L, e->slot);
  e->p = p;
  e->cap = cap;
}

static void put(enc *e, const char *s, size_t n) {
  reserve(e, n);
  memcpy(e->p + e->len, s, n);
  e->len += n;
}

static int enc_fail(enc *e, const char *what) {
  if (!e->err) e->err = what;
  return 0;
}

static int enc_string(enc *e, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  put(e, "\"", 1);
  size_t i = 0;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x80) {
      size_t k = utf8_len((const unsigned char *)s + i, (const unsigned char *)s + n);
      if (!k) return enc_fail(e, "string is not valid UTF-8");
      put(e, s + i, k);
      i += k;
      continue;
    }
    if (c == '"') put(e, "\\\"", 2);
    else if (c == '\\') put(e, "\\\\", 2);
    else if (c == '\n') put(e, "\\n", 2);
    else if (c == '\r') put(e, "\\r", 2);
    else if (c == '\t') put(e, "\\t", 2);
    else if (c < 0x20 || c == 0x7f) {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      put(e, u, 6);
    } else {
      put(e, (const char *)&c, 1);
    }
    i++;
  }
  put(e, "\"", 1);
  return 1;
}

static int enc_value(enc *e, int idx);

static int is_json_array_mt(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, MW_MT_JSON_ARRAY);
  int eq = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return eq;
}

static int enc_table(enc *e, int idx) {
  lua_State *L = e->L;
  if (++e->depth > e->max_depth) return enc_fail(e, "nested too deep (or a cycle)");
  if (!lua_checkstack(L, 6)) return enc_fail(e, "out of stack");
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  int only_strings = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
    if (lua_type(L, -1) != LUA_TSTRING) only_strings = 0;
  }
  int ok = 1;
  if (count == 0) {
    put(e, is_json_array_mt(L, idx) ? "[]" : "{}", 2);
  } else if (count == n) {
    put(e, "[", 1);
    for (lua_Integer i = 1; i <= n && ok; i++) {
      if (i > 1) put(e, ",", 1);
      lua_rawgeti(L, idx, i);
      ok = enc_value(e, lua_gettop(L));
      lua_pop(L, 1);
    }
    put(e, "]", 1);
  } else if (!only_strings) {
    ok = enc_fail(e, "table mixes array items and keys, or has keys that are not strings");
  } else {
    put(e, "{", 1);
    int first = 1;
    lua_pushnil(L);
    while (ok && lua_next(L, idx)) {
      if (!first) put(e, ",", 1);
      first = 0;
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl); /* a string already: no conversion */
      ok = enc_string(e, k, kl);
      put(e, ":", 1);
      if (ok) ok = enc_value(e, lua_gettop(L));
      lua_pop(L, 1);
    }
    if (!ok) lua_pop(L, 1); /* the key lua_next left */
    put(e, "}", 1);
  }
  e->depth--;
  return ok;
}

static int enc_value(enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: put(e, "null", 4); return 1;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) put(e, "true", 4); else put(e, "false", 5);
    return 1;
  case LUA_TNUMBER: {
    char buf[40];
    int n;
    if (lua_isinteger(L, idx)) {
      n = snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
    } else {
      lua_Number f = lua_tonumber(L, idx);
      if (!isfinite(f)) return enc_fail(e, "NaN and infinity have no JSON form");
      n = snprintf(buf, sizeof buf, "%.17g", (double)f);
    }
    put(e, buf, (size_t)n);
    return 1;
  }
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return enc_string(e, s, n);
  }
  case LUA_TTABLE: return enc_table(e, idx);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == &g_null_tag) { put(e, "null", 4); return 1; }
    /* fall through */
  default: return enc_fail(e, "value of a type JSON cannot hold");
  }
}

/* core.json_encode(value [, {max_depth=}]) -> text | nil, err */
static int l_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  int max_depth = opt_int_field(L, 2, "max_depth", MW_JSON_DEFAULT_DEPTH, MW_JSON_MAX_DEPTH);
  lua_settop(L, 1);
  lua_pushnil(L); /* slot 2: the output's userdata */
  enc e = {L, 2, NULL, 0, 0, 0, max_depth, NULL, 0};
  if (!enc_value(&e, 1)) {
    lua_pushnil(L);
    lua_pushfstring(L, "json: cannot encode: %s", e.err);
    return 2;
  }
  lua_pushlstring(L, e.p ? e.p : "", e.len);
  return 1;
}

/* core.json_array(t) -> t, marked to encode as an array even when empty */
static int l_json_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  luaL_setmetatable(L, MW_MT_JSON_ARRAY);
  return 1;
}

void mw_ljson_open(lua_State *L) {
  if (luaL_newmetatable(L, MW_MT_JSON_ARRAY)) {
    lua_pushliteral(L, "json array");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"json_decode", l_json_decode},
                                 {"json_encode", l_json_encode},
                                 {"json_array", l_json_array},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  lua_pushlightuserdata(L, &g_null_tag);
  lua_setfield(L, -2, "json_null");
}
