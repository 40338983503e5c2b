/* The Lua states' allocator: accounting, the cap, reuse of small blocks. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lua/mw_lalloc.h"
#include "mw_test.h"

static void *al(mw_lalloc *a, void *p, size_t o, size_t n) { return mw_lalloc_fn(a, p, o, n); }

static void test_accounting_and_cap(void) {
  mw_lua_mem mem = {0};
  mem.limit = 1000;
  mw_lalloc *a = mw_lalloc_new(&mem);
  MW_CHECK(a != NULL);
  void *p = al(a, NULL, LUA_TTABLE, 600); /* osize is a type tag here */
  MW_CHECK(p != NULL);
  MW_CHECK_INT(atomic_load(&mem.used), 600);
  MW_CHECK(al(a, NULL, 0, 500) == NULL); /* 1,100 > 1,000 */
  MW_CHECK_INT(atomic_load(&mem.used), 600);
  void *q = al(a, NULL, 0, 400);
  MW_CHECK(q != NULL);
  MW_CHECK_INT(atomic_load(&mem.used), 1000);
  /* growing past the cap fails and keeps the block; shrinking works */
  memset(q, 7, 400);
  MW_CHECK(al(a, q, 400, 401) == NULL);
  void *q2 = al(a, q, 400, 100);
  MW_CHECK(q2 != NULL);
  MW_CHECK_INT(atomic_load(&mem.used), 700);
  MW_CHECK(q2 && ((unsigned char *)q2)[99] == 7);
  al(a, q2, 100, 0);
  al(a, p, 600, 0);
  MW_CHECK_INT(atomic_load(&mem.used), 0);
  mw_lalloc_free(a);
  mw_lalloc_free(NULL); /* ignored */
}

static void test_small_blocks_are_reused(void) {
  mw_lalloc *a = mw_lalloc_new(NULL);
  void *p = al(a, NULL, 0, 40);
  MW_CHECK_INT(mw_lalloc_cached(a), 0);
  al(a, p, 40, 0);
  MW_CHECK_INT(mw_lalloc_cached(a), 48); /* 40 rounds up to 48 */
  void *q = al(a, NULL, 0, 33);          /* same class: the same block */
  MW_CHECK(q == p);
  MW_CHECK_INT(mw_lalloc_cached(a), 0);
  /* a resize within the class keeps the block */
  memcpy(q, "abcdefghijklmnopqrstuvwxyzABCDEF", 32);
  MW_CHECK(al(a, q, 33, 48) == q);
  /* across classes the contents move */
  void *r = al(a, q, 48, 200);
  MW_CHECK(r != NULL && memcmp(r, "abcdefghijklmnopqrstuvwxyzABCDEF", 32) == 0);
  MW_CHECK_INT(mw_lalloc_cached(a), 48); /* the old block went to its list */
  /* small to big and back */
  void *big = al(a, r, 200, 5000);
  MW_CHECK(big != NULL && memcmp(big, "abcdefghijklmnopqrstuvwxyzABCDEF", 32) == 0);
  void *big2 = al(a, big, 5000, 9000);
  MW_CHECK(big2 != NULL && memcmp(big2, "abcdefghijklmnopqrstuvwxyzABCDEF", 32) == 0);
  void *small = al(a, big2, 9000, 16);
  MW_CHECK(small != NULL && memcmp(small, "abcdefghijklmnop", 16) == 0);
  al(a, small, 16, 0);
  /* blocks above 256 bytes are not kept */
  size_t before = mw_lalloc_cached(a);
  al(a, al(a, NULL, 0, 257), 257, 0);
  MW_CHECK_INT(mw_lalloc_cached(a), before);
  mw_lalloc_free(a);
}

static void test_cache_is_bounded(void) {
  mw_lalloc *a = mw_lalloc_new(NULL);
  enum { N = 2 * MW_LALLOC_CACHE_MAX / 64 };
  void **v = malloc(N * sizeof *v);
  for (int i = 0; i < N; i++) v[i] = al(a, NULL, 0, 64);
  for (int i = 0; i < N; i++) al(a, v[i], 64, 0); /* twice the cap freed */
  MW_CHECK(mw_lalloc_cached(a) <= MW_LALLOC_CACHE_MAX);
  MW_CHECK(mw_lalloc_cached(a) >= MW_LALLOC_CACHE_MAX - 64);
  free(v);
  mw_lalloc_free(a); /* the sanitizer build checks that nothing leaks */
}

static void test_a_lua_state_runs_on_it(void) {
  mw_lua_mem mem = {0};
  mw_lalloc *a = mw_lalloc_new(&mem);
  lua_State *L = lua_newstate(mw_lalloc_fn, a);
  MW_CHECK(L != NULL);
  luaL_openlibs(L);
  const char *code =
      "local keep = {}\n"
      "for i = 1, 20000 do\n"
      "  local t = {name = 'n' .. i, list = {i, i + 1, i + 2}, blob = string.rep('x', i % 700)}\n"
      "  if i % 100 == 0 then keep[#keep + 1] = t end\n"
      "end\n"
      "local sum = 0\n"
      "for _, t in ipairs(keep) do sum = sum + t.list[3] + #t.blob end\n"
      "return sum\n";
  MW_CHECK_INT(luaL_dostring(L, code), LUA_OK);
  long long want = 0;
  for (int i = 100; i <= 20000; i += 100) want += i + 2 + i % 700;
  MW_CHECK_INT(lua_tointeger(L, -1), want);
  MW_CHECK(atomic_load(&mem.used) > 0);
  lua_close(L);
  MW_CHECK_INT(atomic_load(&mem.used), 0); /* every byte Lua took came back */
  mw_lalloc_free(a);
}

int main(void) {
  MW_RUN(test_accounting_and_cap);
  MW_RUN(test_small_blocks_are_reused);
  MW_RUN(test_cache_is_bounded);
  MW_RUN(test_a_lua_state_runs_on_it);
  return mw_test_done();
}
