/* google.rpc.Status <-> status objects (lua/mw_details.h), checked against
 * bytes written by hand from the wire format, and the google.rpc types every
 * schema has (schema/mw_schema.h, mw_schema_add_rpc_types). */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lua/l_api.h"
#include "lua/mw_details.h"
#include "mw_test.h"
#include "schema/mw_schema.h"

#define URL "type.googleapis.com/google.rpc.ErrorInfo"
/* Status{code: 5, message: "m", details: [Any{type_url: URL,
 * value: ErrorInfo{reason: "R"}}]}: 40 bytes of URL, 47 of Any. */
static const char WIRE[] = "\x08\x05\x12\x01m\x1a\x2f\x0a\x28" URL "\x12\x03\x0a\x01R";
#define WIRE_LEN (sizeof WIRE - 1)

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "moonwire.core", mw_lcore_open, 0); /* the status metatable */
  lua_pop(L, 1);
  return L;
}

static void test_every_schema_has_the_types(void) {
  static const char *types[] = {"google.rpc.Status", "google.rpc.ErrorInfo",
                                "google.rpc.RetryInfo", "google.rpc.DebugInfo",
                                "google.rpc.QuotaFailure", "google.rpc.PreconditionFailure",
                                "google.rpc.BadRequest", "google.rpc.RequestInfo",
                                "google.rpc.ResourceInfo", "google.rpc.Help",
                                "google.rpc.LocalizedMessage", "google.protobuf.Any",
                                "google.protobuf.Duration"};
  mw_diag d = {0};
  mw_schema *s = mw_schema_load(NULL, &d); /* no inputs at all */
  MW_CHECK(s != NULL);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  for (size_t i = 0; s && i < sizeof types / sizeof *types; i++)
    MW_CHECK(upb_DefPool_FindMessageByName(mw_schema_pool(s), types[i]) != NULL);
  /* Adding them again is a no-op, not a duplicate. */
  MW_CHECK_INT(s ? mw_schema_add_rpc_types(s, &d) : -1, 0);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  mw_schema_free(s);
  mw_diag_free(&d);
}

static void test_encode(void) {
  lua_State *L = new_state();
  upb_Arena *a = upb_Arena_New();
  const upb_DefPool *pool = mw_details_pool(L);
  MW_CHECK(pool != NULL);
  luaL_dostring(L, "return {{['@type'] = '" URL "', reason = 'R'}}");
  char err[256] = "";
  size_t len = 0;
  int top = lua_gettop(L);
  const char *bytes = mw_details_encode(L, 5, "m", -1, pool, a, &len, err, sizeof err);
  MW_CHECK(bytes != NULL);
  MW_CHECK_INT(lua_gettop(L), top);
  MW_CHECK_INT(len, WIRE_LEN);
  MW_CHECK(bytes && len == WIRE_LEN && memcmp(bytes, WIRE, WIRE_LEN) == 0);
  /* An empty array: code and message only. */
  lua_newtable(L);
  bytes = mw_details_encode(L, 5, "m", -1, pool, a, &len, err, sizeof err);
  MW_CHECK(bytes && len == 5 && memcmp(bytes, WIRE, 5) == 0);
  /* What cannot be encoded: an error with the path, nothing else. */
  luaL_dostring(L, "return {{['@type'] = 'type.googleapis.com/no.Such'}}");
  MW_CHECK(mw_details_encode(L, 5, "m", -1, pool, a, &len, err, sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "field 'details[1]'");
  MW_CHECK_CONTAINS(err, "no.Such");
  luaL_dostring(L, "return {{['@type'] = '" URL "', reasn = 'R'}}");
  MW_CHECK(mw_details_encode(L, 5, "m", -1, pool, a, &len, err, sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "unknown field 'details[1].reasn' in message google.rpc.ErrorInfo");
  /* A pool without google.rpc.Status. */
  mw_schema *empty = mw_schema_new();
  MW_CHECK(mw_details_encode(L, 5, "m", -1, mw_schema_pool(empty), a, &len, err,
                             sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "the schema has no google.rpc.Status");
  mw_schema_free(empty);
  upb_Arena_Free(a);
  lua_close(L);
}

static void test_decode(void) {
  lua_State *L = new_state();
  upb_Arena *a = upb_Arena_New();
  const upb_DefPool *pool = mw_details_pool(L);
  char err[256] = "";
  MW_CHECK_INT(mw_details_decode_push(L, WIRE, WIRE_LEN, pool, a, err, sizeof err), 0);
  lua_setglobal(L, "st");
  luaL_dostring(L, "local core = require 'moonwire.core'\n"
                   "return core.is_status(st) and st.code == 5 and st.message == 'm'"
                   " and #st.details == 1 and st.details[1]['@type'] == '" URL "'"
                   " and st.details[1].reason == 'R' and st.details[1].domain == ''"
                   " and tostring(st) == 'NOT_FOUND: m'");
  MW_CHECK(lua_toboolean(L, -1));
  lua_pop(L, 1);
  /* An Any of a type the pool lacks stays bytes, and encodes back the same. */
  static const char other[] = "\x08\x05\x1a\x0c\x0a\x07x.y/z.W\x12\x01\x07";
  MW_CHECK_INT(mw_details_decode_push(L, other, sizeof other - 1, pool, a, err, sizeof err), 0);
  lua_getfield(L, -1, "details");
  lua_rawgeti(L, -1, 1);
  lua_getfield(L, -1, "@value");
  MW_CHECK_STR(lua_tostring(L, -1), "\x07");
  lua_getfield(L, -2, "@type");
  MW_CHECK_STR(lua_tostring(L, -1), "x.y/z.W");
  lua_pop(L, 3); /* @type, @value, the detail: the details array on top */
  size_t len = 0;
  const char *bytes = mw_details_encode(L, 5, "", -1, pool, a, &len, err, sizeof err);
  MW_CHECK(bytes && len == sizeof other - 1 && memcmp(bytes, other, len) == 0);
  lua_settop(L, 0);
  /* Not a google.rpc.Status: an error, nothing pushed. */
  MW_CHECK_INT(mw_details_decode_push(L, "\xff\xff\xff", 3, pool, a, err, sizeof err), -1);
  MW_CHECK_CONTAINS(err, "cannot decode google.rpc.Status");
  MW_CHECK_INT(lua_gettop(L), 0);
  upb_Arena_Free(a);
  lua_close(L);
}

int main(void) {
  MW_RUN(test_every_schema_has_the_types);
  MW_RUN(test_encode);
  MW_RUN(test_decode);
  return mw_test_done();
}
