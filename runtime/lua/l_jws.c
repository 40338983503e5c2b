/* JWS keys and signatures for Lua: core.b64url_decode, core.jws_key,
 * core.jws_keys_file and the moonwire.jws_key userdata (key:verify,
 * key:alg, key:kind), over tls/mw_jws.h. The token's parsing and its
 * claims are policy, in lua/moonwire/jwt.lua.
 *
 * A key's material never comes back out to Lua: not from the userdata, not
 * in an error message, not from a key file (core.jws_keys_file gives keys,
 * never the file's text), so a script that can reach moonwire.core cannot
 * read a file through it either. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/mw_fs.h"
#include "lua/l_api.h"
#include "tls/mw_jws.h"

#define MW_MT_JWS_KEY "moonwire.jws_key"
#define MW_MT_JWS_FILE "moonwire.jws_file"
/* Largest key file read (a JWKS of a few dozen keys is far below). */
#define MAX_KEY_FILE (1u << 20)
/* Most keys one JWKS may hold. */
#define MAX_JWKS_KEYS 64

typedef struct key_ud {
  mw_jws_key *key; /* the userdata's own; NULL once collected */
} key_ud;

/* Pushes an empty key userdata (its __gc frees whatever key it comes to
 * hold). It is made before the key, and the key stored into it with no Lua
 * call between its making and the store: any Lua call can raise (out of
 * memory, most often), and a key made first would be lost. */
static key_ud *push_key_ud(lua_State *L) {
  key_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->key = NULL;
  luaL_setmetatable(L, MW_MT_JWS_KEY);
  return u;
}

/* The text of a key file while it is parsed, owned by a userdata on the
 * stack so that a raise frees it (wiped: a JWK may hold a secret). */
typedef struct file_ud {
  char *data;
  size_t len;
} file_ud;

static void file_release(file_ud *f) {
  mw_jws_wipe(f->data, f->len);
  free(f->data);
  f->data = NULL;
  f->len = 0;
}

static int l_file_gc(lua_State *L) {
  file_release(luaL_checkudata(L, 1, MW_MT_JWS_FILE));
  return 0;
}

static mw_jws_key *check_key(lua_State *L, int idx) {
  key_ud *u = luaL_checkudata(L, idx, MW_MT_JWS_KEY);
  if (!u->key) luaL_error(L, "jws key already freed");
  return u->key;
}

/* Decodes the base64url string at the top of the stack in place: replaces
 * it by the bytes. Returns 0 (leaving it) when malformed. */
static int decode_top(lua_State *L) {
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, mw_b64url_max(len));
  long n = mw_b64url_decode(s, len, out);
  if (n < 0) {
    luaL_pushresultsize(&b, 0);
    lua_pop(L, 1);
    return 0;
  }
  luaL_pushresultsize(&b, (size_t)n);
  lua_remove(L, -2);
  return 1;
}

/* core.b64url_decode(text) -> bytes | nil, err */
static int l_b64url_decode(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_settop(L, 1);
  if (!decode_top(L)) {
    lua_pushnil(L);
    lua_pushliteral(L, "malformed base64url");
    return 2;
  }
  return 1;
}

/* The base64url field `name` of the table at idx, decoded, pushed; 0 (with
 * nothing pushed) when missing or malformed. */
static int b64_field(lua_State *L, int idx, const char *name) {
  if (lua_getfield(L, idx, name) != LUA_TSTRING) {
    lua_pop(L, 1);
    return 0;
  }
  return decode_top(L);
}

static const char *str_field(lua_State *L, int idx, const char *name) {
  lua_getfield(L, idx, name);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the table still holds it */
  return s;
}

/* A key from the JWK (RFC 7517) at idx, or NULL with err. */
static mw_jws_key *key_from_jwk(lua_State *L, int idx, char *err, size_t errlen) {
  const char *kty = str_field(L, idx, "kty");
  const char *use = str_field(L, idx, "use");
  const char *alg = str_field(L, idx, "alg");
  mw_jws_key *k = NULL;
  if (use && strcmp(use, "sig") != 0) {
    snprintf(err, errlen, "JWK with use \"%s\" (not sig)", use);
    return NULL;
  }
  if (!kty) {
    snprintf(err, errlen, "JWK without kty");
    return NULL;
  }
  int top = lua_gettop(L);
  if (strcmp(kty, "RSA") == 0) {
    if (b64_field(L, idx, "n") && b64_field(L, idx, "e")) {
      size_t nl, el;
      const char *n = lua_tolstring(L, -2, &nl), *e = lua_tolstring(L, -1, &el);
      k = mw_jws_key_rsa((const unsigned char *)n, nl, (const unsigned char *)e, el, err, errlen);
    } else {
      snprintf(err, errlen, "RSA JWK needs base64url n and e");
    }
  } else if (strcmp(kty, "EC") == 0) {
    const char *crv = str_field(L, idx, "crv");
    if (!crv || strcmp(crv, "P-256") != 0) {
      snprintf(err, errlen, "EC JWK on a curve other than P-256");
    } else if (b64_field(L, idx, "x") && b64_field(L, idx, "y")) {
      size_t xl, yl;
      const char *x = lua_tolstring(L, -2, &xl), *y = lua_tolstring(L, -1, &yl);
      k = mw_jws_key_ec_p256((const unsigned char *)x, xl, (const unsigned char *)y, yl, err, errlen);
    } else {
      snprintf(err, errlen, "EC JWK needs base64url x and y");
    }
  } else if (strcmp(kty, "oct") == 0) {
    if (b64_field(L, idx, "k")) {
      size_t kl;
      const char *s = lua_tolstring(L, -1, &kl);
      k = mw_jws_key_secret((const unsigned char *)s, kl, err, errlen);
    } else {
      snprintf(err, errlen, "oct JWK needs base64url k");
    }
  } else {
    snprintf(err, errlen, "JWK of unsupported kty (RSA, EC and oct are)");
  }
  lua_settop(L, top);
  if (k && alg && strcmp(alg, mw_jws_kind_alg(mw_jws_key_kind(k))) != 0) {
    snprintf(err, errlen, "JWK alg %s does not fit its key (which takes %s)", alg,
             mw_jws_kind_alg(mw_jws_key_kind(k)));
    mw_jws_key_free(k);
    return NULL;
  }
  return k;
}

/* core.jws_key(spec) -> key | nil, err. spec: {pem = text} | {secret =
 * bytes} | a JWK table {kty = "RSA" | "EC" | "oct", ...}. */
static int l_jws_key(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  key_ud *u = push_key_ud(L); /* 2 */
  char err[160] = "";
  mw_jws_key *k = NULL;
  size_t len;
  lua_getfield(L, 1, "pem");
  lua_getfield(L, 1, "secret");
  if (lua_type(L, -2) == LUA_TSTRING) {
    const char *pem = lua_tolstring(L, -2, &len);
    k = mw_jws_key_pem(pem, len, err, sizeof err);
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    const char *s = lua_tolstring(L, -1, &len);
    k = mw_jws_key_secret((const unsigned char *)s, len, err, sizeof err);
  } else {
    k = key_from_jwk(L, 1, err, sizeof err);
  }
  u->key = k;
  lua_settop(L, 2);
  if (!k) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* Pushes {kid = (string or nil), key = key} for the JWK at idx, or returns
 * 0 with err. */
static int push_jwk_entry(lua_State *L, int idx, char *err, size_t errlen) {
  lua_createtable(L, 0, 2);
  key_ud *u = push_key_ud(L);
  lua_setfield(L, -2, "key"); /* the table keeps u alive */
  u->key = key_from_jwk(L, idx, err, errlen);
  if (!u->key) {
    lua_pop(L, 1);
    return 0;
  }
  if (lua_getfield(L, idx, "kid") == LUA_TSTRING) lua_setfield(L, -2, "kid");
  else lua_pop(L, 1);
  return 1;
}

/* core.jws_keys_file(path) -> {{kid =, key =}, ...} | nil, err. The file is
 * a PEM public key (or certificate), a JWKS ({"keys": [...]}) or one JWK. */
static int l_jws_keys_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  file_ud *f = lua_newuserdatauv(L, sizeof *f, 0); /* 2 */
  f->data = NULL;
  f->len = 0;
  luaL_setmetatable(L, MW_MT_JWS_FILE);
  int eno = 0;
  /* Nothing between the read and the store can raise. */
  mw_fs_status st = mw_fs_read(path, MAX_KEY_FILE, &f->data, &f->len, &eno);
  const char *data = f->data;
  size_t len = f->len;
  if (st != MW_FS_OK) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path,
                    st == MW_FS_EBIG ? "larger than 1 MiB" : strerror(eno));
    return 2;
  }
  char err[160] = "";
  lua_newtable(L); /* [result] */
  int res = lua_gettop(L);
  size_t skip = 0;
  while (skip < len && (data[skip] == ' ' || data[skip] == '\n' || data[skip] == '\r' ||
                        data[skip] == '\t'))
    skip++;
  int ok;
  if (len - skip >= 5 && memcmp(data + skip, "-----", 5) == 0) {
    lua_createtable(L, 0, 1);
    key_ud *u = push_key_ud(L);
    lua_setfield(L, -2, "key");
    u->key = mw_jws_key_pem(data, len, err, sizeof err);
    file_release(f);
    ok = u->key != NULL;
    if (ok) lua_rawseti(L, res, 1);
  } else {
    /* The text is gone (wiped) as soon as it is decoded, or with f if the
     * decode raises; decode errors carry offsets only, never content. */
    ok = mw_ljson_decode(L, data, len, 8, err, sizeof err);
    file_release(f);
    if (ok && !lua_istable(L, -1)) {
      snprintf(err, sizeof err, "neither a JWKS nor a JWK");
      ok = 0;
    }
    if (ok) {
      int doc = lua_gettop(L);
      if (lua_getfield(L, doc, "keys") == LUA_TTABLE) {
        int keys = lua_gettop(L);
        lua_Integer n = (lua_Integer)lua_rawlen(L, keys);
        if (n == 0 || n > MAX_JWKS_KEYS) {
          snprintf(err, sizeof err, "JWKS with %d keys (1..%d allowed)", (int)n, MAX_JWKS_KEYS);
          ok = 0;
        }
        for (lua_Integer i = 1; ok && i <= n; i++) {
          if (lua_rawgeti(L, keys, i) != LUA_TTABLE) {
            snprintf(err, sizeof err, "JWKS key %d is not an object", (int)i);
            ok = 0;
          } else {
            char kerr[140];
            if (push_jwk_entry(L, lua_gettop(L), kerr, sizeof kerr)) {
              lua_rawseti(L, res, i);
            } else {
              snprintf(err, sizeof err, "JWKS key %d: %s", (int)i, kerr);
              ok = 0;
            }
          }
          lua_pop(L, 1);
        }
      } else {
        ok = push_jwk_entry(L, doc, err, sizeof err);
        if (ok) lua_rawseti(L, res, 1);
      }
    }
  }
  if (!ok) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, err);
    return 2;
  }
  lua_settop(L, res);
  return 1;
}

/* key:verify(alg, signing_input, signature_bytes) -> "valid" |
 * "bad_signature" | "alg_mismatch" */
static int l_key_verify(lua_State *L) {
  mw_jws_key *k = check_key(L, 1);
  const char *alg = luaL_checkstring(L, 2);
  size_t inlen, siglen;
  const char *in = luaL_checklstring(L, 3, &inlen);
  const char *sig = luaL_checklstring(L, 4, &siglen);
  switch (mw_jws_verify(k, alg, (const unsigned char *)in, inlen,
                        (const unsigned char *)sig, siglen)) {
  case MW_JWS_VALID: lua_pushliteral(L, "valid"); break;
  case MW_JWS_BAD_SIGNATURE: lua_pushliteral(L, "bad_signature"); break;
  case MW_JWS_ALG_MISMATCH: lua_pushliteral(L, "alg_mismatch"); break;
  default: return luaL_error(L, "signature verification failed inside OpenSSL");
  }
  return 1;
}

static int l_key_alg(lua_State *L) {
  lua_pushstring(L, mw_jws_kind_alg(mw_jws_key_kind(check_key(L, 1))));
  return 1;
}

static int l_key_kind(lua_State *L) {
  mw_jws_kind kind = mw_jws_key_kind(check_key(L, 1));
  lua_pushstring(L, kind == MW_JWS_RSA ? "RSA" : kind == MW_JWS_EC ? "EC" : "oct");
  return 1;
}

static int l_key_tostring(lua_State *L) {
  key_ud *u = luaL_checkudata(L, 1, MW_MT_JWS_KEY);
  lua_pushfstring(L, "jws key (%s)", u->key ? mw_jws_kind_alg(mw_jws_key_kind(u->key)) : "freed");
  return 1;
}

static int l_key_gc(lua_State *L) {
  key_ud *u = luaL_checkudata(L, 1, MW_MT_JWS_KEY);
  mw_jws_key_free(u->key);
  u->key = NULL;
  return 0;
}

void mw_ljws_open(lua_State *L) {
  if (luaL_newmetatable(L, MW_MT_JWS_KEY)) {
    static const luaL_Reg methods[] = {{"verify", l_key_verify},
                                       {"alg", l_key_alg},
                                       {"kind", l_key_kind},
                                       {NULL, NULL}};
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_key_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_key_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, MW_MT_JWS_FILE)) {
    lua_pushcfunction(L, l_file_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"b64url_decode", l_b64url_decode},
                                 {"jws_key", l_jws_key},
                                 {"jws_keys_file", l_jws_keys_file},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
