/* The in-process shared dict (shared/mw_shdict.h): every operation's
 * results as OpenResty gives them, expiry on an injected clock, the LRU
 * order of eviction, safe_ refusals, lists, flags, binary keys, and two
 * threads incrementing one key. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mw_test.h"
#include "shared/mw_shdict.h"

static int64_t g_now = 1000;
static int64_t test_clock(void *ud) {
  (void)ud;
  return g_now;
}

static mw_shbuf g_buf;

static mw_shval S(const char *s) {
  return (mw_shval){.type = MW_SHV_STR, .u.s = {s, strlen(s)}};
}
static mw_shval I(int64_t i) { return (mw_shval){.type = MW_SHV_INT, .u.i = i}; }
static mw_shval F(double d) { return (mw_shval){.type = MW_SHV_FLOAT, .u.d = d}; }
static mw_shval B(int b) { return (mw_shval){.type = MW_SHV_BOOL, .u.b = b}; }
static const mw_shval NIL = {.type = MW_SHV_NIL};

static mw_shres run(mw_shdict *d, mw_shreq rq) {
  if (rq.key && !rq.klen) rq.klen = strlen(rq.key);
  mw_shres r;
  mw_shrc rc = mw_shdict_exec(d, &rq, &r, &g_buf);
  MW_CHECK_INT(rc, r.rc);
  return r;
}

static mw_shres store(mw_shdict *d, mw_shop op, const char *k, mw_shval v, int64_t ttl,
                      uint32_t flags) {
  return run(d, (mw_shreq){.op = op, .key = k, .val = v, .ttl_ms = ttl, .flags = flags});
}
static mw_shres get(mw_shdict *d, const char *k) {
  return run(d, (mw_shreq){.op = MW_SHOP_GET, .key = k});
}
static mw_shres op1(mw_shdict *d, mw_shop op, const char *k) {
  return run(d, (mw_shreq){.op = op, .key = k});
}
static int is_str(mw_shres r, const char *s) {
  return r.rc == MW_SH_OK && r.val.type == MW_SHV_STR && r.val.u.s.len == strlen(s) &&
         memcmp(r.val.u.s.p, s, r.val.u.s.len) == 0;
}

static mw_shdict *fresh(size_t size) {
  g_now = 1000;
  mw_shdict *d = mw_shdict_new(size);
  MW_CHECK(d != NULL);
  mw_shdict_set_clock(d, test_clock, NULL);
  return d;
}

static void test_new(void) {
  MW_CHECK(mw_shdict_new(MW_SHARED_MIN_SIZE - 1) == NULL);
  mw_shdict *d = fresh(MW_SHARED_MIN_SIZE);
  mw_shres c = run(d, (mw_shreq){.op = MW_SHOP_CAPACITY});
  MW_CHECK_INT(c.n, MW_SHARED_MIN_SIZE);
  mw_shres f = run(d, (mw_shreq){.op = MW_SHOP_FREE_SPACE});
  MW_CHECK(f.n > 0 && f.n < MW_SHARED_MIN_SIZE); /* the table is charged */
  mw_shdict_free(d);
  mw_shdict_free(NULL);
}

static void test_get_set_types(void) {
  mw_shdict *d = fresh(1 << 20);
  MW_CHECK_INT(get(d, "nope").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(get(d, "nope").val.type, MW_SHV_NIL);
  mw_shres r = store(d, MW_SHOP_SET, "s", S("hello"), 0, 0);
  MW_CHECK_INT(r.rc, MW_SH_OK);
  MW_CHECK_INT(r.forcible, 0);
  MW_CHECK(is_str(get(d, "s"), "hello"));
  MW_CHECK_INT(get(d, "s").flags, 0);
  store(d, MW_SHOP_SET, "i", I(42), 0, 0);
  r = get(d, "i");
  MW_CHECK_INT(r.val.type, MW_SHV_INT);
  MW_CHECK_INT(r.val.u.i, 42);
  store(d, MW_SHOP_SET, "f", F(2.5), 0, 0);
  r = get(d, "f");
  MW_CHECK_INT(r.val.type, MW_SHV_FLOAT);
  MW_CHECK(r.val.u.d == 2.5);
  store(d, MW_SHOP_SET, "b", B(0), 0, 0);
  r = get(d, "b");
  MW_CHECK_INT(r.val.type, MW_SHV_BOOL);
  MW_CHECK_INT(r.val.u.b, 0);
  /* a string value with NULs, and the empty string */
  mw_shval bin = {.type = MW_SHV_STR, .u.s = {"a\0b\0", 4}};
  store(d, MW_SHOP_SET, "bin", bin, 0, 0);
  r = get(d, "bin");
  MW_CHECK_INT(r.val.u.s.len, 4);
  MW_CHECK(memcmp(r.val.u.s.p, "a\0b\0", 4) == 0);
  store(d, MW_SHOP_SET, "empty", S(""), 0, 0);
  MW_CHECK(is_str(get(d, "empty"), ""));
  /* overwrite with another type and size, then delete with nil */
  store(d, MW_SHOP_SET, "s", I(7), 0, 0);
  MW_CHECK_INT(get(d, "s").val.u.i, 7);
  store(d, MW_SHOP_SET, "s", S("a much longer string than before"), 0, 0);
  MW_CHECK(is_str(get(d, "s"), "a much longer string than before"));
  MW_CHECK_INT(store(d, MW_SHOP_SET, "s", NIL, 0, 0).rc, MW_SH_OK);
  MW_CHECK_INT(get(d, "s").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(store(d, MW_SHOP_SET, "never-there", NIL, 0, 0).rc, MW_SH_OK);
  /* keys: empty, too long, binary */
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_GET, .key = "", .klen = 0}).rc, MW_SH_EMPTY_KEY);
  char *big = calloc(1, MW_SH_MAX_KEY + 2);
  memset(big, 'k', MW_SH_MAX_KEY + 1);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_SET, .key = big, .klen = MW_SH_MAX_KEY + 1,
                                 .val = I(1)}).rc,
               MW_SH_LONG_KEY);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_SET, .key = big, .klen = MW_SH_MAX_KEY,
                                 .val = I(1)}).rc,
               MW_SH_OK);
  free(big);
  run(d, (mw_shreq){.op = MW_SHOP_SET, .key = "k\0x", .klen = 3, .val = I(1)});
  run(d, (mw_shreq){.op = MW_SHOP_SET, .key = "k\0y", .klen = 3, .val = I(2)});
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_GET, .key = "k\0x", .klen = 3}).val.u.i, 1);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_GET, .key = "k\0y", .klen = 3}).val.u.i, 2);
  MW_CHECK_INT(get(d, "k").rc, MW_SH_NOT_FOUND);
  /* a list is not a store value */
  MW_CHECK_INT(store(d, MW_SHOP_SET, "x", (mw_shval){.type = MW_SHV_LIST}, 0, 0).rc,
               MW_SH_BAD_VALUE);
  mw_shdict_free(d);
}

static void test_flags(void) {
  mw_shdict *d = fresh(1 << 20);
  store(d, MW_SHOP_SET, "k", S("v"), 0, 0xdeadbeef);
  MW_CHECK(get(d, "k").flags == 0xdeadbeefu);
  store(d, MW_SHOP_SET, "k", S("w"), 0, 0); /* in place: the flags go too */
  MW_CHECK_INT(get(d, "k").flags, 0);
  store(d, MW_SHOP_REPLACE, "k", S("longer value"), 0, 5);
  MW_CHECK_INT(get(d, "k").flags, 5);
  mw_shdict_free(d);
}

static void test_add_replace_delete(void) {
  mw_shdict *d = fresh(1 << 20);
  MW_CHECK_INT(store(d, MW_SHOP_REPLACE, "k", I(1), 0, 0).rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(store(d, MW_SHOP_ADD, "k", I(1), 0, 0).rc, MW_SH_OK);
  MW_CHECK_INT(store(d, MW_SHOP_ADD, "k", I(2), 0, 0).rc, MW_SH_EXISTS);
  MW_CHECK_INT(store(d, MW_SHOP_SAFE_ADD, "k", I(2), 0, 0).rc, MW_SH_EXISTS);
  MW_CHECK_INT(get(d, "k").val.u.i, 1);
  MW_CHECK_INT(store(d, MW_SHOP_REPLACE, "k", S("two"), 0, 0).rc, MW_SH_OK);
  MW_CHECK(is_str(get(d, "k"), "two"));
  /* add over an expired item succeeds; replace of one does not */
  store(d, MW_SHOP_SET, "e", I(1), 10, 0);
  g_now += 10;
  MW_CHECK_INT(store(d, MW_SHOP_REPLACE, "e", I(2), 0, 0).rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(store(d, MW_SHOP_ADD, "e", I(3), 0, 0).rc, MW_SH_OK);
  MW_CHECK_INT(get(d, "e").val.u.i, 3);
  /* delete is set(k, nil) */
  MW_CHECK_INT(store(d, MW_SHOP_SET, "k", NIL, 0, 0).rc, MW_SH_OK);
  MW_CHECK_INT(get(d, "k").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(store(d, MW_SHOP_SAFE_SET, "k", I(9), 0, 0).rc, MW_SH_OK);
  MW_CHECK_INT(get(d, "k").val.u.i, 9);
  mw_shdict_free(d);
}

static void test_ttl(void) {
  mw_shdict *d = fresh(1 << 20);
  store(d, MW_SHOP_SET, "k", S("v"), 1500, 3);
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "k").n, 1500);
  g_now += 1499;
  MW_CHECK(is_str(get(d, "k"), "v"));
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "k").n, 1);
  g_now += 1;
  MW_CHECK_INT(get(d, "k").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "k").rc, MW_SH_NOT_FOUND);
  /* get_stale still sees it, with its flags */
  mw_shres r = op1(d, MW_SHOP_GET_STALE, "k");
  MW_CHECK(is_str(r, "v"));
  MW_CHECK_INT(r.stale, 1);
  MW_CHECK_INT(r.flags, 3);
  store(d, MW_SHOP_SET, "n", I(1), 0, 0);
  r = op1(d, MW_SHOP_GET_STALE, "n");
  MW_CHECK_INT(r.stale, 0);
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "n").n, 0); /* never expires */
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "missing").rc, MW_SH_NOT_FOUND);
  /* expire sets, changes and removes a ttl */
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_EXPIRE, .key = "n", .ttl_ms = 200}).rc, MW_SH_OK);
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "n").n, 200);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_EXPIRE, .key = "n", .ttl_ms = 0}).rc, MW_SH_OK);
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "n").n, 0);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_EXPIRE, .key = "missing", .ttl_ms = 5}).rc,
               MW_SH_NOT_FOUND);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_EXPIRE, .key = "k", .ttl_ms = 5}).rc,
               MW_SH_NOT_FOUND); /* expired */
  mw_shdict_free(d);
}

static void test_flush(void) {
  mw_shdict *d = fresh(1 << 20);
  for (int i = 0; i < 10; i++) {
    char k[8];
    snprintf(k, sizeof k, "k%d", i);
    store(d, MW_SHOP_SET, k, I(i), i < 4 ? 100 : 0, 0);
  }
  mw_shres r = run(d, (mw_shreq){.op = MW_SHOP_KEYS, .max = 0});
  MW_CHECK_INT(r.n, 10);
  g_now += 100;
  r = run(d, (mw_shreq){.op = MW_SHOP_KEYS, .max = 0});
  MW_CHECK_INT(r.n, 6); /* expired ones are not listed */
  /* most recent first */
  size_t off = 0, len;
  const char *k;
  MW_CHECK(mw_shared_next_key(&g_buf, &off, &k, &len));
  MW_CHECK(len == 2 && memcmp(k, "k9", 2) == 0);
  r = run(d, (mw_shreq){.op = MW_SHOP_KEYS, .max = 2});
  MW_CHECK_INT(r.n, 2);
  off = 0;
  int n = 0;
  while (mw_shared_next_key(&g_buf, &off, &k, &len)) n++;
  MW_CHECK_INT(n, 2);
  MW_CHECK_INT(mw_shdict_count(d), 10);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_FLUSH_EXPIRED, .max = 3}).n, 3);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_FLUSH_EXPIRED, .max = 0}).n, 1);
  MW_CHECK_INT(mw_shdict_count(d), 6);
  /* flush_all marks everything expired and frees nothing */
  size_t used = mw_shdict_used(d);
  run(d, (mw_shreq){.op = MW_SHOP_FLUSH_ALL});
  MW_CHECK_INT(get(d, "k5").rc, MW_SH_NOT_FOUND);
  r = op1(d, MW_SHOP_GET_STALE, "k5");
  MW_CHECK_INT(r.val.u.i, 5);
  MW_CHECK_INT(r.stale, 1);
  MW_CHECK_INT(mw_shdict_used(d), used);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_KEYS}).n, 0);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_FLUSH_EXPIRED}).n, 6);
  MW_CHECK_INT(mw_shdict_count(d), 0);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_FREE_SPACE}).n,
               (1 << 20) - (int64_t)mw_shdict_used(d));
  mw_shdict_free(d);
}

static void test_incr(void) {
  mw_shdict *d = fresh(1 << 20);
  mw_shres r = run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "c", .val = I(1)});
  MW_CHECK_INT(r.rc, MW_SH_NOT_FOUND);
  r = run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "c", .val = I(1), .has_init = 1,
                        .init = I(10), .init_ttl_ms = 500});
  MW_CHECK_INT(r.rc, MW_SH_OK);
  MW_CHECK_INT(r.val.type, MW_SHV_INT);
  MW_CHECK_INT(r.val.u.i, 11);
  MW_CHECK_INT(r.forcible, 0);
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "c").n, 500);
  /* an existing value ignores init and keeps its ttl */
  g_now += 100;
  r = run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "c", .val = I(-3), .has_init = 1,
                        .init = I(100), .init_ttl_ms = 5000});
  MW_CHECK_INT(r.val.u.i, 8);
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "c").n, 400);
  /* floats stay floats, and an integer plus a float is a float */
  r = run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "c", .val = F(0.5)});
  MW_CHECK_INT(r.val.type, MW_SHV_FLOAT);
  MW_CHECK(r.val.u.d == 8.5);
  MW_CHECK_INT(get(d, "c").val.type, MW_SHV_FLOAT);
  /* integers wrap as Lua's do */
  store(d, MW_SHOP_SET, "big", I(INT64_MAX), 0, 0);
  r = run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "big", .val = I(1)});
  MW_CHECK(r.val.u.i == INT64_MIN);
  /* not a number */
  store(d, MW_SHOP_SET, "s", S("12"), 0, 0);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "s", .val = I(1)}).rc,
               MW_SH_NOT_NUMBER);
  store(d, MW_SHOP_SET, "t", B(1), 0, 0);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "t", .val = I(1)}).rc,
               MW_SH_NOT_NUMBER);
  /* an expired value counts as missing: init starts it again, with init_ttl */
  store(d, MW_SHOP_SET, "e", I(50), 10, 7);
  g_now += 10;
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "e", .val = I(1)}).rc,
               MW_SH_NOT_FOUND);
  r = run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "e", .val = I(1), .has_init = 1,
                        .init = I(0)});
  MW_CHECK_INT(r.val.u.i, 1);
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "e").n, 0);
  MW_CHECK_INT(get(d, "e").flags, 0);
  /* the same over an expired string */
  store(d, MW_SHOP_SET, "es", S("abc"), 10, 0);
  g_now += 10;
  r = run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "es", .val = F(1.5), .has_init = 1,
                        .init = I(1), .init_ttl_ms = 20});
  MW_CHECK(r.val.type == MW_SHV_FLOAT && r.val.u.d == 2.5);
  MW_CHECK_INT(op1(d, MW_SHOP_TTL, "es").n, 20);
  /* a step that is not a number is refused before anything is touched */
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "c", .val = S("1")}).rc,
               MW_SH_BAD_VALUE);
  mw_shdict_free(d);
}

static void test_lists(void) {
  mw_shdict *d = fresh(1 << 20);
  MW_CHECK_INT(op1(d, MW_SHOP_LPOP, "l").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(op1(d, MW_SHOP_LLEN, "l").rc, MW_SH_OK);
  MW_CHECK_INT(op1(d, MW_SHOP_LLEN, "l").n, 0);
  MW_CHECK_INT(store(d, MW_SHOP_LPUSH, "l", S("b"), 0, 0).n, 1);
  MW_CHECK_INT(store(d, MW_SHOP_LPUSH, "l", S("a"), 0, 0).n, 2);
  MW_CHECK_INT(store(d, MW_SHOP_RPUSH, "l", I(3), 0, 0).n, 3);
  MW_CHECK_INT(store(d, MW_SHOP_RPUSH, "l", F(4.5), 0, 0).n, 4);
  MW_CHECK_INT(op1(d, MW_SHOP_LLEN, "l").n, 4);
  MW_CHECK_INT(store(d, MW_SHOP_RPUSH, "l", B(1), 0, 0).rc, MW_SH_BAD_VALUE);
  MW_CHECK_INT(get(d, "l").rc, MW_SH_IS_LIST);
  MW_CHECK_INT(op1(d, MW_SHOP_GET_STALE, "l").rc, MW_SH_IS_LIST);
  MW_CHECK_INT(run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "l", .val = I(1)}).rc,
               MW_SH_NOT_NUMBER);
  MW_CHECK(is_str(op1(d, MW_SHOP_LPOP, "l"), "a"));
  mw_shres r = op1(d, MW_SHOP_RPOP, "l");
  MW_CHECK(r.val.type == MW_SHV_FLOAT && r.val.u.d == 4.5);
  r = op1(d, MW_SHOP_RPOP, "l");
  MW_CHECK(r.val.type == MW_SHV_INT && r.val.u.i == 3);
  MW_CHECK(is_str(op1(d, MW_SHOP_RPOP, "l"), "b"));
  /* an emptied list is gone */
  MW_CHECK_INT(op1(d, MW_SHOP_RPOP, "l").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(mw_shdict_count(d), 0);
  /* a plain value is not a list */
  store(d, MW_SHOP_SET, "v", I(1), 0, 0);
  MW_CHECK_INT(store(d, MW_SHOP_LPUSH, "v", I(1), 0, 0).rc, MW_SH_NOT_LIST);
  MW_CHECK_INT(op1(d, MW_SHOP_LPOP, "v").rc, MW_SH_NOT_LIST);
  MW_CHECK_INT(op1(d, MW_SHOP_LLEN, "v").rc, MW_SH_NOT_LIST);
  /* but an expired one is replaced by a new list */
  store(d, MW_SHOP_SET, "x", I(1), 5, 0);
  g_now += 5;
  MW_CHECK_INT(store(d, MW_SHOP_RPUSH, "x", S("y"), 0, 0).n, 1);
  /* set replaces a list, and the list's memory comes back */
  size_t before = mw_shdict_used(d);
  for (int i = 0; i < 100; i++) store(d, MW_SHOP_RPUSH, "big", S("0123456789"), 0, 0);
  MW_CHECK(mw_shdict_used(d) > before + 100 * 10);
  store(d, MW_SHOP_SET, "big", I(1), 0, 0);
  MW_CHECK_INT(get(d, "big").val.u.i, 1);
  store(d, MW_SHOP_SET, "big", NIL, 0, 0);
  MW_CHECK_INT(mw_shdict_used(d), before);
  /* lists expire as a whole */
  store(d, MW_SHOP_RPUSH, "tl", I(1), 0, 0);
  run(d, (mw_shreq){.op = MW_SHOP_EXPIRE, .key = "tl", .ttl_ms = 10});
  g_now += 10;
  MW_CHECK_INT(op1(d, MW_SHOP_LLEN, "tl").n, 0);
  MW_CHECK_INT(op1(d, MW_SHOP_LPOP, "tl").rc, MW_SH_NOT_FOUND);
  mw_shdict_free(d); /* frees lists still held */
}

/* Fills d with 1 KiB values k0, k1, ... until the next would evict. */
static int fill(mw_shdict *d, char *val, size_t vlen) {
  mw_shval v = {.type = MW_SHV_STR, .u.s = {val, vlen}};
  for (int i = 0;; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    mw_shres r = store(d, MW_SHOP_SAFE_SET, k, v, 0, 0);
    if (r.rc == MW_SH_NO_MEMORY) return i;
    MW_CHECK_INT(r.rc, MW_SH_OK);
  }
}

static void test_eviction(void) {
  static char val[1024];
  memset(val, 'v', sizeof val);
  mw_shdict *d = fresh(MW_SHARED_MIN_SIZE);
  int n = fill(d, val, sizeof val);
  MW_CHECK(n > 40 && n < 64);
  MW_CHECK(mw_shdict_used(d) <= MW_SHARED_MIN_SIZE);
  /* safe_set and safe_add refuse, and nothing went */
  mw_shval v = {.type = MW_SHV_STR, .u.s = {val, sizeof val}};
  MW_CHECK_INT(store(d, MW_SHOP_SAFE_ADD, "new", v, 0, 0).rc, MW_SH_NO_MEMORY);
  MW_CHECK_INT(mw_shdict_count(d), n);
  /* list pushes never evict either */
  MW_CHECK_INT(store(d, MW_SHOP_RPUSH, "list", v, 0, 0).rc, MW_SH_NO_MEMORY);
  MW_CHECK_INT(mw_shdict_count(d), n);
  /* touch k0 (the oldest): then k1 is the least recently used */
  MW_CHECK(get(d, "k0").rc == MW_SH_OK);
  /* k5 expired: LRU wins over expiry, k1 is evicted and k5 stays (counts
   * and misses only: a hit would move the entry) */
  run(d, (mw_shreq){.op = MW_SHOP_EXPIRE, .key = "k5", .ttl_ms = 1});
  g_now += 1;
  mw_shres r = store(d, MW_SHOP_SET, "new", v, 0, 0);
  MW_CHECK_INT(r.rc, MW_SH_OK);
  MW_CHECK_INT(r.forcible, 1);
  MW_CHECK_INT(get(d, "k1").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(mw_shdict_count(d), n);
  /* k2 and k3 go next; evicting k4 then frees the expired k5 behind it
   * (the sweep takes expired entries at the tail) */
  MW_CHECK_INT(store(d, MW_SHOP_SET, "new2", v, 0, 0).forcible, 1);
  MW_CHECK_INT(get(d, "k2").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(store(d, MW_SHOP_SET, "new3", v, 0, 0).forcible, 1);
  MW_CHECK_INT(get(d, "k3").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(mw_shdict_count(d), n);
  MW_CHECK_INT(store(d, MW_SHOP_SET, "new4", v, 0, 0).forcible, 1);
  MW_CHECK_INT(mw_shdict_count(d), n - 1);
  MW_CHECK_INT(op1(d, MW_SHOP_GET_STALE, "k4").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(op1(d, MW_SHOP_GET_STALE, "k5").rc, MW_SH_NOT_FOUND);
  MW_CHECK_INT(get(d, "k6").rc, MW_SH_OK);
  MW_CHECK_INT(get(d, "k0").rc, MW_SH_OK);
  MW_CHECK_INT(get(d, "new").val.u.s.len, sizeof val);
  MW_CHECK(mw_shdict_used(d) <= MW_SHARED_MIN_SIZE);
  /* a write that fits without evicting reports forcible = false */
  store(d, MW_SHOP_SET, "new", NIL, 0, 0);
  r = store(d, MW_SHOP_SET, "small", I(1), 0, 0);
  MW_CHECK_INT(r.rc, MW_SH_OK);
  MW_CHECK_INT(r.forcible, 0);
  /* full again: incr evicts too */
  for (int i = 0;; i++) {
    char k[16];
    snprintf(k, sizeof k, "s%d", i);
    if (store(d, MW_SHOP_SAFE_SET, k, I(i), 0, 0).rc != MW_SH_OK) break;
  }
  r = run(d, (mw_shreq){.op = MW_SHOP_INCR, .key = "ctr", .val = I(1), .has_init = 1,
                        .init = I(0)});
  MW_CHECK_INT(r.rc, MW_SH_OK);
  MW_CHECK_INT(r.forcible, 1);
  MW_CHECK_INT(r.val.u.i, 1);
  MW_CHECK(mw_shdict_used(d) <= MW_SHARED_MIN_SIZE);
  /* a value bigger than the whole dict: no memory, and nothing evicted */
  size_t count = mw_shdict_count(d);
  char *huge = malloc(MW_SHARED_MIN_SIZE);
  memset(huge, 'h', MW_SHARED_MIN_SIZE);
  mw_shval hv = {.type = MW_SHV_STR, .u.s = {huge, MW_SHARED_MIN_SIZE}};
  r = store(d, MW_SHOP_SET, "huge", hv, 0, 0);
  MW_CHECK_INT(r.rc, MW_SH_NO_MEMORY);
  MW_CHECK_INT(r.forcible, 0);
  MW_CHECK_INT(mw_shdict_count(d), count);
  free(huge);
  mw_shdict_free(d);
}

/* A value that needs more than EVICT_TRIES evictions fails with forcible
 * set, as OpenResty's does after "tens" of evictions. */
static void test_eviction_gives_up(void) {
  mw_shdict *d = fresh(MW_SHARED_MIN_SIZE);
  int i = 0;
  for (;; i++) {
    char k[16];
    snprintf(k, sizeof k, "%d", i);
    if (store(d, MW_SHOP_SAFE_SET, k, I(i), 0, 0).rc != MW_SH_OK) break;
  }
  MW_CHECK(i > 300);
  size_t big = MW_SHARED_MIN_SIZE / 2;
  char *p = calloc(1, big);
  mw_shres r = store(d, MW_SHOP_SET, "big", (mw_shval){.type = MW_SHV_STR, .u.s = {p, big}}, 0, 0);
  MW_CHECK_INT(r.rc, MW_SH_NO_MEMORY);
  MW_CHECK_INT(r.forcible, 1);
  MW_CHECK(mw_shdict_count(d) < (size_t)i);
  free(p);
  mw_shdict_free(d);
}

typedef struct counter_arg {
  mw_shdict *d;
  int n;
  int failures;
} counter_arg;

static void *incr_thread(void *p) {
  counter_arg *a = p;
  mw_shbuf buf = {0};
  mw_shreq rq = {.op = MW_SHOP_INCR, .key = "hits", .klen = 4, .val = I(1), .has_init = 1,
                 .init = I(0)};
  for (int i = 0; i < a->n; i++) {
    mw_shres r;
    if (mw_shdict_exec(a->d, &rq, &r, &buf) != MW_SH_OK) a->failures++;
  }
  free(buf.p);
  return NULL;
}

static void test_threads(void) {
  mw_shdict *d = mw_shdict_new(1 << 20); /* the real clock */
  counter_arg a = {d, 100000, 0}, b = {d, 100000, 0};
  pthread_t t1, t2;
  pthread_create(&t1, NULL, incr_thread, &a);
  pthread_create(&t2, NULL, incr_thread, &b);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  MW_CHECK_INT(a.failures + b.failures, 0);
  mw_shres r = get(d, "hits");
  MW_CHECK_INT(r.val.type, MW_SHV_INT);
  MW_CHECK_INT(r.val.u.i, 200000);
  mw_shdict_free(d);
}

/* The real clock: a short ttl expires in real time. */
static void test_real_clock(void) {
  mw_shdict *d = mw_shdict_new(1 << 20);
  store(d, MW_SHOP_SET, "k", I(1), 20, 0);
  MW_CHECK_INT(get(d, "k").rc, MW_SH_OK);
  struct timespec ts = {0, 30 * 1000000};
  nanosleep(&ts, NULL);
  MW_CHECK_INT(get(d, "k").rc, MW_SH_NOT_FOUND);
  mw_shdict_free(d);
}

int main(void) {
  MW_RUN(test_new);
  MW_RUN(test_get_set_types);
  MW_RUN(test_flags);
  MW_RUN(test_add_replace_delete);
  MW_RUN(test_ttl);
  MW_RUN(test_flush);
  MW_RUN(test_incr);
  MW_RUN(test_lists);
  MW_RUN(test_eviction);
  MW_RUN(test_eviction_gives_up);
  MW_RUN(test_threads);
  MW_RUN(test_real_clock);
  free(g_buf.p);
  return mw_test_done();
}
