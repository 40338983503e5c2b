/* Unit tests for lua/l_json.c's decoder as C calls it (mw_ljson_decode,
 * which the JWKS loader uses): values pushed, error offsets, the depth
 * limit, and the stack left balanced on every failure. The Lua-facing
 * functions are covered by tests/lua/json_spec.lua. */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lua/l_api.h"
#include "mw_test.h"

static lua_State *L;

static int decode(const char *s, char *err) {
  int top = lua_gettop(L);
  int ok = mw_ljson_decode(L, s, strlen(s), 8, err, 128);
  MW_CHECK_INT(lua_gettop(L), top + (ok ? 1 : 0)); /* one value or nothing */
  return ok;
}

static void test_values(void) {
  char err[128];
  MW_CHECK(decode(" {\"a\": [1, -2.5e1, \"\\u00e9\"], \"b\": true} ", err));
  lua_getfield(L, -1, "a");
  lua_rawgeti(L, -1, 1);
  MW_CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 1);
  lua_rawgeti(L, -2, 2);
  MW_CHECK(!lua_isinteger(L, -1) && lua_tonumber(L, -1) == -25.0);
  lua_rawgeti(L, -3, 3);
  MW_CHECK_STR(lua_tostring(L, -1), "\xc3\xa9");
  lua_settop(L, 0);
  MW_CHECK(decode("-0", err));
  MW_CHECK(decode("\"\"", err));
  lua_settop(L, 0);
}

static void test_errors(void) {
  char err[128];
  MW_CHECK(!decode("{\"a\":1,}", err));
  MW_CHECK_STR(err, "json: at byte 7: expected a string key");
  MW_CHECK(!decode("[1 2]", err));
  MW_CHECK_STR(err, "json: at byte 3: expected ',' or ']'");
  MW_CHECK(!decode("{\"k\":1,\"k\":2}", err));
  MW_CHECK_STR(err, "json: at byte 7: duplicate key");
  MW_CHECK(!decode("[[[[[[[[[1]]]]]]]]]", err)); /* depth 9 > 8 */
  MW_CHECK_CONTAINS(err, "nested too deep");
  MW_CHECK(decode("[[[[[[[[1]]]]]]]]", err));  /* depth 8 */
  lua_settop(L, 0);
  MW_CHECK(!decode("\"\\ud83d\"", err));
  MW_CHECK_CONTAINS(err, "lone high surrogate");
  MW_CHECK(!decode("tru", err));
  MW_CHECK_STR(err, "json: at byte 0: unexpected character");
  MW_CHECK(!decode("1 x", err));
  MW_CHECK_STR(err, "json: at byte 2: trailing characters after the value");
  /* Embedded NUL inside a string is a control character. */
  char nul[] = "\"a\0b\"";
  MW_CHECK(!mw_ljson_decode(L, nul, 5, 8, err, sizeof err));
  MW_CHECK_CONTAINS(err, "control character");
}

int main(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  mw_lcore_open(L); /* registers the array metatable */
  lua_settop(L, 0);
  MW_RUN(test_values);
  MW_RUN(test_errors);
  lua_close(L);
  return mw_test_done();
}
