/* google.rpc.Status <-> status objects (see mw_details.h). */
#include "lua/mw_details.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "base/mw_diag.h"
#include "codec/mw_codec.h"
#include "lua/l_api.h"
#include "lua/mw_lstate.h"
#include "schema/mw_methods.h"
#include "schema/mw_schema.h"

#define STATUS_TYPE "google.rpc.Status"

/* The schema of states without a generation: the google.rpc types only. */
static pthread_once_t own_once = PTHREAD_ONCE_INIT;
static mw_schema *own_schema; /* owned here, freed at exit */

static void own_free(void) {
  mw_schema_free(own_schema);
  own_schema = NULL;
}

static void own_make(void) {
  mw_schema *s = mw_schema_new();
  mw_diag d = {0};
  if (s && mw_schema_add_rpc_types(s, &d) != 0) {
    mw_schema_free(s);
    s = NULL;
  }
  mw_diag_free(&d);
  own_schema = s;
  if (s) atexit(own_free);
}

const upb_DefPool *mw_details_pool(lua_State *L) {
  mw_lstate *st = mw_lstate_of(L);
  if (st && st->methods) return mw_schema_pool(mw_methods_schema(st->methods));
  pthread_once(&own_once, own_make);
  return own_schema ? mw_schema_pool(own_schema) : NULL;
}

static const upb_MessageDef *status_def(const upb_DefPool *pool, char *err,
                                        size_t errlen) {
  const upb_MessageDef *m = pool ? upb_DefPool_FindMessageByName(pool, STATUS_TYPE) : NULL;
  if (!m) snprintf(err, errlen, "the schema has no " STATUS_TYPE);
  return m;
}

const char *mw_details_encode(lua_State *L, int code, const char *msg, int details_idx,
                              const upb_DefPool *pool, upb_Arena *a, size_t *len,
                              char *err, size_t errlen) {
  const upb_MessageDef *m = status_def(pool, err, errlen);
  if (!m) return NULL;
  details_idx = lua_absindex(L, details_idx);
  /* A fresh table: the status object may hold keys of its own (cancelled,
   * a catalogue's name) that google.rpc.Status lacks. */
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, msg ? msg : "");
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, details_idx);
  lua_setfield(L, -2, "details");
  char *bytes = mw_codec_encode(L, -1, m, a, len, err, errlen);
  lua_pop(L, 1);
  return bytes;
}

int mw_details_decode_push(lua_State *L, const char *bin, size_t len,
                           const upb_DefPool *pool, upb_Arena *a, char *err,
                           size_t errlen) {
  const upb_MessageDef *m = status_def(pool, err, errlen);
  if (!m || mw_codec_decode_push(L, bin, len, m, a, err, errlen) != 0) return -1;
  luaL_setmetatable(L, MW_MT_STATUS);
  return 0;
}
