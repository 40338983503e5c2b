/* What the idempotency interceptor (lua/moonwire/interceptors/idempotency.lua)
 * needs of C: the process-wide table of keys (base/mw_idem.h), a notice
 * (lua/mw_notice.h) that wakes duplicates waiting for a running call on any
 * worker, the request fingerprint and the codec by type name.
 *
 *   core.idem_claim(scope, key, fp) -> "new", token | "done", reply or nil |
 *                                      "running", version | "mismatch" | "full"
 *   core.idem_complete(scope, key, token, reply, ttl) -> "stored" | "unkept" | "stale"
 *   core.idem_release(scope, key, token) -> whether the claim was there
 *   core.idem_wait(version)        in a handler: waits until a claim ends
 *                                  after `version` (from idem_claim)
 *   core.idem_fingerprint(type, scope, req, maps) -> 32 bytes, or nil, err
 *                                  (maps: whether the type can hold maps,
 *                                  from core.idem_maps)
 *   core.idem_maps(type) -> whether messages of type can hold a map
 *   core.idem_encode(type, t) -> bytes, or nil, err
 *   core.idem_decode(type, bytes) -> table, or nil, err
 *   core.idem_method(path) -> kind, input type, output type (nil outside
 *                             the runtime or for an unknown path)
 *   core.idem_field(type, name) -> the field's type ("string", "int64",
 *                                  "message"...) or nil; raises for an
 *                                  unknown type
 *   core.idem_stats() -> {entries=, running=, bytes=, max_bytes=}
 *
 * Types are full message names looked up in the generation's pool (outside
 * the runtime: the google.rpc types, as mw.decode_status has them). */
#include <string.h>

#include <lauxlib.h>

#include "base/mw_idem.h"
#include "codec/mw_codec.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"
#include "lua/mw_details.h"
#include "lua/mw_lstate.h"
#include "lua/mw_notice.h"
#include "tls/mw_digest.h"

/* Bumped whenever a claim ends (completed or released): duplicates waiting
 * for it, on any worker, look again. */
static mw_notice g_notice = MW_NOTICE_INIT;

static mw_idem *store(lua_State *L) {
  mw_idem *s = mw_idem_shared();
  if (!s) luaL_error(L, "idempotency table: out of memory");
  return s;
}

/* A reply handed out by a claim is held here (the closure's upvalue, one per
 * state) while it is copied into a Lua string, so that a memory error in
 * the copy cannot leak its reference: the next claim, or the state's close,
 * drops it. */
typedef struct reply_slot {
  mw_idem_reply *r;
} reply_slot;

static int slot_gc(lua_State *L) {
  reply_slot *rs = lua_touserdata(L, 1);
  mw_idem_reply_unref(rs->r);
  rs->r = NULL;
  return 0;
}

static int l_idem_claim(lua_State *L) {
  size_t slen, klen, flen;
  const char *scope = luaL_checklstring(L, 1, &slen);
  const char *key = luaL_checklstring(L, 2, &klen);
  const char *fp = luaL_checklstring(L, 3, &flen);
  luaL_argcheck(L, flen == MW_IDEM_FP_LEN, 3, "a fingerprint is 32 bytes");
  mw_idem *s = store(L);
  reply_slot *rs = lua_touserdata(L, lua_upvalueindex(1));
  mw_idem_reply_unref(rs->r);
  rs->r = NULL;
  /* Read before the claim: a claim that ends after this one saw it running
   * bumps the version past this. */
  unsigned long version = mw_notice_version(&g_notice);
  uint64_t token = 0;
  mw_idem_reply *r = NULL;
  switch (mw_idem_claim(s, scope, slen, key, klen, (const unsigned char *)fp, mw_idem_now(),
                        &token, &r)) {
  case MW_IDEM_NEW:
    lua_pushliteral(L, "new");
    lua_pushinteger(L, (lua_Integer)token);
    return 2;
  case MW_IDEM_DONE:
    lua_pushliteral(L, "done");
    if (!r) {
      lua_pushnil(L);
      return 2;
    }
    rs->r = r;
    {
      size_t len;
      const char *data = mw_idem_reply_data(r, &len);
      lua_pushlstring(L, data, len);
    }
    rs->r = NULL;
    mw_idem_reply_unref(r);
    return 2;
  case MW_IDEM_RUNNING:
    lua_pushliteral(L, "running");
    lua_pushinteger(L, (lua_Integer)version);
    return 2;
  case MW_IDEM_MISMATCH: lua_pushliteral(L, "mismatch"); return 1;
  case MW_IDEM_FULL: lua_pushliteral(L, "full"); return 1;
  }
  return 0;
}

static int l_idem_complete(lua_State *L) {
  size_t slen, klen, rlen;
  const char *scope = luaL_checklstring(L, 1, &slen);
  const char *key = luaL_checklstring(L, 2, &klen);
  lua_Integer token = luaL_checkinteger(L, 3);
  const char *reply = luaL_checklstring(L, 4, &rlen);
  lua_Number ttl = luaL_checknumber(L, 5);
  luaL_argcheck(L, ttl > 0 && ttl < 1e9, 5, "ttl must be > 0 seconds");
  mw_idem_complete_result r = mw_idem_complete(store(L), scope, slen, key, klen,
                                               (uint64_t)token, reply, rlen, ttl,
                                               mw_idem_now());
  if (r != MW_IDEM_STALE) mw_notice_bump(&g_notice);
  lua_pushstring(L, r == MW_IDEM_STORED ? "stored" : r == MW_IDEM_UNKEPT ? "unkept" : "stale");
  return 1;
}

static int l_idem_release(lua_State *L) {
  size_t slen, klen;
  const char *scope = luaL_checklstring(L, 1, &slen);
  const char *key = luaL_checklstring(L, 2, &klen);
  lua_Integer token = luaL_checkinteger(L, 3);
  int rc = mw_idem_release(store(L), scope, slen, key, klen, (uint64_t)token);
  if (rc == 0) mw_notice_bump(&g_notice);
  lua_pushboolean(L, rc == 0);
  return 1;
}

static int l_idem_wait(lua_State *L) {
  lua_Integer seen = luaL_checkinteger(L, 1);
  return mw_notice_wait(L, &g_notice, (unsigned long)seen, "idempotency wait");
}

static const upb_MessageDef *check_type(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  const upb_DefPool *pool = mw_details_pool(L);
  const upb_MessageDef *m = pool ? upb_DefPool_FindMessageByName(pool, name) : NULL;
  if (!m) luaL_error(L, "no message type '%s' in the loaded .proto files", name);
  return m;
}

static int arena_gc(lua_State *L) {
  upb_Arena **a = lua_touserdata(L, 1);
  if (*a) upb_Arena_Free(*a);
  *a = NULL;
  return 0;
}

/* Scratch space for one function: in a handler the call's arena (freed
 * with the call, whatever Lua raises meanwhile); elsewhere one owned by a
 * userdata pushed on L, freed when it is collected. */
static upb_Arena *scratch(lua_State *L) {
  mw_lcall *h = mw_co_current(L);
  upb_Arena *a = h ? mw_co_arena(h) : NULL;
  if (a) return a;
  upb_Arena **slot = lua_newuserdatauv(L, sizeof *slot, 0);
  *slot = NULL;
  if (luaL_newmetatable(L, "moonwire.idem_arena")) {
    lua_pushcfunction(L, arena_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  *slot = upb_Arena_New();
  if (!*slot) luaL_error(L, "out of memory");
  return *slot;
}

static int push_fail(lua_State *L, const char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* The fingerprint of a request: SHA-256 of the scope, a NUL and the request
 * table encoded. The codec writes fields in number order and arrays in
 * their order, so only map entries can come out in another order for an
 * equal request (lua_next's); with maps set, the bytes are encoded again
 * deterministically (mw_codec_canonical) so that equal requests hash alike
 * whichever order their maps came in. */
static int l_idem_fingerprint(lua_State *L) {
  const upb_MessageDef *m = check_type(L, 1);
  size_t slen;
  const char *scope = luaL_checklstring(L, 2, &slen);
  luaL_checktype(L, 3, LUA_TTABLE);
  int maps = lua_toboolean(L, 4);
  upb_Arena *a = scratch(L);
  char err[MW_CODEC_ERRLEN];
  size_t len, clen;
  const char *bytes = mw_codec_encode(L, 3, m, a, &len, err, sizeof err);
  if (!bytes) return push_fail(L, err);
  const char *canon = bytes;
  clen = len;
  if (maps && !(canon = mw_codec_canonical(bytes, len, m, a, &clen, err, sizeof err)))
    return push_fail(L, err);
  unsigned char fp[MW_SHA256_LEN];
  mw_digest_part parts[] = {{scope, slen}, {"", 1}, {canon, clen}};
  if (mw_sha256(parts, 3, fp) != 0) return push_fail(L, "SHA-256 failed");
  lua_pushlstring(L, (const char *)fp, sizeof fp);
  return 1;
}

static int l_idem_encode(lua_State *L) {
  const upb_MessageDef *m = check_type(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  upb_Arena *a = scratch(L);
  char err[MW_CODEC_ERRLEN];
  size_t len;
  const char *bytes = mw_codec_encode(L, 2, m, a, &len, err, sizeof err);
  if (!bytes) return push_fail(L, err);
  lua_pushlstring(L, bytes, len);
  return 1;
}

static int l_idem_decode(lua_State *L) {
  const upb_MessageDef *m = check_type(L, 1);
  size_t len;
  const char *bytes = luaL_checklstring(L, 2, &len);
  upb_Arena *a = scratch(L);
  char err[MW_CODEC_ERRLEN];
  if (mw_codec_decode_push(L, bytes, len, m, a, err, sizeof err) != 0) return push_fail(L, err);
  return 1;
}

static int l_idem_method(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  mw_lstate *st = mw_lstate_of(L);
  const mw_method *m = st && st->methods ? mw_methods_find(st->methods, path, len) : NULL;
  if (!m) return 0;
  static const char *const kinds[] = {"unary", "server_stream", "client_stream",
                                      "bidi_stream"};
  lua_pushstring(L, kinds[m->kind & 3]);
  lua_pushstring(L, upb_MessageDef_FullName(m->input));
  lua_pushstring(L, upb_MessageDef_FullName(m->output));
  return 3;
}

static int l_idem_field(lua_State *L) {
  const upb_MessageDef *m = check_type(L, 1);
  const char *name = luaL_checkstring(L, 2);
  const upb_FieldDef *f = upb_MessageDef_FindFieldByName(m, name);
  if (!f) return 0;
  static const char *const names[] = {
      [kUpb_CType_Bool] = "bool",     [kUpb_CType_Float] = "float",
      [kUpb_CType_Int32] = "int32",   [kUpb_CType_UInt32] = "uint32",
      [kUpb_CType_Enum] = "enum",     [kUpb_CType_Message] = "message",
      [kUpb_CType_Double] = "double", [kUpb_CType_Int64] = "int64",
      [kUpb_CType_UInt64] = "uint64", [kUpb_CType_String] = "string",
      [kUpb_CType_Bytes] = "bytes"};
  upb_CType t = upb_FieldDef_CType(f);
  if (upb_FieldDef_IsRepeated(f)) lua_pushliteral(L, "repeated");
  else lua_pushstring(L, (size_t)t < sizeof names / sizeof *names && names[t] ? names[t] : "?");
  return 1;
}

/* Whether messages of m can hold a map: a map field of m or of a message
 * field's type, however deep (the contents of an Any are bytes to this). */
static int has_maps(const upb_MessageDef *m, const upb_MessageDef **seen, int *n, int cap) {
  for (int i = 0; i < *n; i++)
    if (seen[i] == m) return 0;
  if (*n == cap) return 1; /* too wide to follow: assume it has */
  seen[(*n)++] = m;
  int count = upb_MessageDef_FieldCount(m);
  for (int i = 0; i < count; i++) {
    const upb_FieldDef *f = upb_MessageDef_Field(m, i);
    if (upb_FieldDef_IsMap(f)) return 1;
    const upb_MessageDef *sub = upb_FieldDef_MessageSubDef(f);
    if (sub && upb_MessageDef_WellKnownType(sub) != kUpb_WellKnown_Any &&
        has_maps(sub, seen, n, cap))
      return 1;
  }
  return 0;
}

/* core.idem_maps(type) -> whether its messages can hold a map (the 4th
 * argument of idem_fingerprint). */
static int l_idem_maps(lua_State *L) {
  const upb_MessageDef *m = check_type(L, 1);
  const upb_MessageDef *seen[256];
  int n = 0;
  lua_pushboolean(L, has_maps(m, seen, &n, 256));
  return 1;
}

static int l_idem_stats(lua_State *L) {
  mw_idem_stats st;
  mw_idem_stats_get(store(L), &st);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)st.entries);
  lua_setfield(L, -2, "entries");
  lua_pushinteger(L, (lua_Integer)st.running);
  lua_setfield(L, -2, "running");
  lua_pushinteger(L, (lua_Integer)st.bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, (lua_Integer)st.max_bytes);
  lua_setfield(L, -2, "max_bytes");
  return 1;
}

static const luaL_Reg funcs[] = {
    {"idem_complete", l_idem_complete},
    {"idem_release", l_idem_release},
    {"idem_wait", l_idem_wait},
    {"idem_fingerprint", l_idem_fingerprint},
    {"idem_encode", l_idem_encode},
    {"idem_decode", l_idem_decode},
    {"idem_method", l_idem_method},
    {"idem_field", l_idem_field},
    {"idem_maps", l_idem_maps},
    {"idem_stats", l_idem_stats},
    {NULL, NULL},
};

void mw_lidem_open(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  reply_slot *rs = lua_newuserdatauv(L, sizeof *rs, 0);
  rs->r = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, slot_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, l_idem_claim, 1);
  lua_setfield(L, -2, "idem_claim");
}

void mw_lidem_free(void) {
  mw_notice_free(&g_notice);
  mw_idem_shared_free();
}
