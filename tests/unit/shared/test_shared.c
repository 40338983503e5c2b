/* The registry of shared dicts (shared/mw_shared.h): made once, kept
 * across a reconfigure that drops or resizes a dict (with a warning for
 * each), extended by one that adds a dict; and the contract's helpers. */
#include <stdlib.h>
#include <string.h>

#include "mw_test.h"
#include "shared/mw_shared.h"

static void test_configure(void) {
  mw_shared_spec specs[] = {{"cache", 1 << 20, NULL, NULL, 0}, {"counters", 64 << 10, NULL, NULL, 0}};
  mw_diag warn = {0}, err = {0};
  MW_CHECK_INT(mw_shared_configure(specs, 2, &warn, &err), 0);
  MW_CHECK_INT(mw_diag_count(&warn), 0);
  MW_CHECK_INT(mw_shared_count(), 2);
  const mw_shared_dict *cache = mw_shared_find("cache");
  MW_CHECK(cache != NULL);
  MW_CHECK(mw_shared_find("nope") == NULL);
  MW_CHECK_STR(cache->backend->kind, "memory");
  char names[64];
  mw_shared_names(names, sizeof names);
  MW_CHECK_STR(names, "cache, counters");

  /* a value set before a reconfigure is still there after it */
  mw_shbuf buf = {0};
  mw_shres res;
  mw_shreq set = {.op = MW_SHOP_SET, .key = "k", .klen = 1,
                  .val = {.type = MW_SHV_STR, .u.s = {"v", 1}}};
  MW_CHECK_INT(mw_shared_exec(cache, &set, &res, &buf), MW_SH_OK);

  /* counters resized, cache dropped, sessions added */
  mw_shared_spec next[] = {{"counters", 128 << 10, NULL, NULL, 0}, {"sessions", 64 << 10, NULL, NULL, 0}};
  MW_CHECK_INT(mw_shared_configure(next, 2, &warn, &err), 0);
  MW_CHECK_INT(mw_diag_count(&warn), 2);
  MW_CHECK_CONTAINS(warn.msgs[0], "shared dict 'counters' keeps its size of 64KiB (the config asks for 128KiB");
  MW_CHECK_CONTAINS(warn.msgs[1], "shared dict 'cache' is no longer in the config: kept");
  MW_CHECK_INT(mw_shared_count(), 3);
  MW_CHECK(mw_shared_find("cache") == cache); /* the same record */
  MW_CHECK_INT(mw_shared_find("counters")->size, 64 << 10);
  mw_shreq get = {.op = MW_SHOP_GET, .key = "k", .klen = 1};
  MW_CHECK_INT(mw_shared_exec(cache, &get, &res, &buf), MW_SH_OK);
  MW_CHECK(res.val.type == MW_SHV_STR && res.val.u.s.len == 1 && res.val.u.s.p[0] == 'v');
  mw_shared_names(names, sizeof names);
  MW_CHECK_STR(names, "cache, counters, sessions");
  mw_shared_names(names, 8); /* truncated, still a string */
  MW_CHECK_STR(names, "cache, ");

  mw_diag_free(&warn);
  mw_diag_free(&err);
  free(buf.p);
  mw_shared_free();
  mw_shared_free();
  MW_CHECK_INT(mw_shared_count(), 0);
  MW_CHECK(mw_shared_find("cache") == NULL);
  mw_shared_names(names, sizeof names);
  MW_CHECK_STR(names, "");
}

static void test_strerror(void) {
  MW_CHECK_STR(mw_shared_strerror(MW_SH_NOT_FOUND), "not found");
  MW_CHECK_STR(mw_shared_strerror(MW_SH_EXISTS), "exists");
  MW_CHECK_STR(mw_shared_strerror(MW_SH_NO_MEMORY), "no memory");
  MW_CHECK_STR(mw_shared_strerror(MW_SH_NOT_NUMBER), "not a number");
  MW_CHECK_STR(mw_shared_strerror(MW_SH_NOT_LIST), "value not a list");
  MW_CHECK_STR(mw_shared_strerror(MW_SH_IS_LIST), "value is a list");
  MW_CHECK_STR(mw_shared_strerror(MW_SH_EMPTY_KEY), "empty key");
  MW_CHECK_STR(mw_shared_strerror(MW_SH_LONG_KEY), "key too long");
  MW_CHECK_STR(mw_shared_strerror(MW_SH_BAD_VALUE), "bad value type");
}

static void test_next_key(void) {
  mw_shbuf empty = {0};
  size_t off = 0, len;
  const char *k;
  MW_CHECK_INT(mw_shared_next_key(&empty, &off, &k, &len), 0);
}

int main(void) {
  MW_RUN(test_configure);
  MW_RUN(test_strerror);
  MW_RUN(test_next_key);
  return mw_test_done();
}
