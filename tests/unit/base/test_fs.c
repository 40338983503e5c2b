/* Unit tests for mw_fs: whole-file reads and their failures, the path
 * joins, the directory walk (order, depth, links, hidden entries, pruning,
 * unreadable directories) and the sorted listing. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mw_fs.h"
#include "mw_test.h"

static char root[1024]; /* MW_TEST_TMP/fs, fresh for each run */

static const char *at(char *buf, const char *rel) {
  snprintf(buf, PATH_MAX, "%s/%s", root, rel);
  return buf;
}

static void make_dir(const char *rel) {
  char p[PATH_MAX];
  MW_CHECK_INT(mkdir(at(p, rel), 0755), 0);
}

static void write_file(const char *rel, const char *text, size_t len) {
  char p[PATH_MAX];
  FILE *f = fopen(at(p, rel), "wb");
  MW_CHECK(f != NULL);
  if (!f) return;
  fwrite(text, 1, len, f);
  fclose(f);
}

static void link_to(const char *target, const char *rel) {
  char p[PATH_MAX];
  MW_CHECK_INT(symlink(target, at(p, rel)), 0);
}

static void setup(void) {
  snprintf(root, sizeof root, "%s/fs", MW_TEST_TMP);
  char cmd[2 * sizeof root + 32];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", root, root);
  MW_CHECK_INT(system(cmd), 0);
}

/* ---------------------------------------------------------------------- */

static void test_read(void) {
  char p[PATH_MAX];
  write_file("small.txt", "hello\0world", 11);
  char *data = NULL;
  size_t len = 99;
  int err = -1;
  MW_CHECK_INT(mw_fs_read(at(p, "small.txt"), 0, &data, &len, &err), MW_FS_OK);
  MW_CHECK_INT(len, 11);
  MW_CHECK(data && memcmp(data, "hello\0world", 12) == 0); /* NUL after */
  MW_CHECK_INT(err, 0);
  free(data);

  /* empty: a buffer all the same */
  write_file("empty.txt", "", 0);
  MW_CHECK_INT(mw_fs_read(at(p, "empty.txt"), 0, &data, &len, NULL), MW_FS_OK);
  MW_CHECK(data != NULL);
  MW_CHECK_INT(len, 0);
  if (data) MW_CHECK_INT(data[0], 0);
  free(data);

  /* larger than the first buffer */
  size_t big = 300000;
  char *text = malloc(big);
  for (size_t i = 0; i < big; i++) text[i] = (char)('a' + i % 26);
  write_file("big.txt", text, big);
  MW_CHECK_INT(mw_fs_read(at(p, "big.txt"), 0, &data, &len, NULL), MW_FS_OK);
  MW_CHECK_INT(len, big);
  MW_CHECK(data && memcmp(data, text, big) == 0 && data[big] == 0);
  free(data);

  /* a file whose size stat does not tell */
  MW_CHECK_INT(mw_fs_read("/proc/self/status", 0, &data, &len, NULL), MW_FS_OK);
  MW_CHECK(len > 0 && data && strstr(data, "Name:") != NULL);
  free(data);

  /* the size cap */
  MW_CHECK_INT(mw_fs_read(at(p, "big.txt"), big, &data, &len, &err), MW_FS_OK);
  MW_CHECK_INT(len, big);
  free(data);
  MW_CHECK_INT(mw_fs_read(at(p, "big.txt"), big - 1, &data, &len, &err),
               MW_FS_EBIG);
  MW_CHECK_INT(err, EFBIG);
  MW_CHECK(data == NULL);
  MW_CHECK_INT(len, 0);
  MW_CHECK_INT(mw_fs_read(at(p, "small.txt"), 4, &data, &len, &err), MW_FS_EBIG);
  free(text);

  /* failures */
  MW_CHECK_INT(mw_fs_read(at(p, "missing"), 0, &data, &len, &err), MW_FS_EOPEN);
  MW_CHECK_INT(err, ENOENT);
  MW_CHECK(data == NULL);
  MW_CHECK_INT(mw_fs_read(root, 0, &data, &len, &err), MW_FS_EISDIR);
  MW_CHECK_INT(err, EISDIR);
  MW_CHECK(data == NULL);
  if (geteuid() != 0) { /* root reads anything */
    write_file("secret.txt", "x", 1);
    chmod(at(p, "secret.txt"), 0);
    MW_CHECK_INT(mw_fs_read(p, 0, &data, &len, &err), MW_FS_EOPEN);
    MW_CHECK_INT(err, EACCES);
  }
}

static void check_join(const char *dir, const char *name, const char *want) {
  char *j = mw_fs_join(dir, name);
  MW_CHECK_STR(j, want);
  free(j);
}

static void check_norm(const char *base, const char *rel, const char *want) {
  char *j = mw_fs_join_norm(base, rel);
  MW_CHECK_STR(j, want);
  free(j);
}

static void test_join(void) {
  check_join("a", "b", "a/b");
  check_join("a/", "b", "a/b");
  check_join("/", "b", "/b");
  check_join("", "b", "b");
  check_join("a", "b/c.proto", "a/b/c.proto");
  check_join("a", "", "a/");
  check_join("./a", "../b", "./a/../b"); /* plain: nothing folded */

  check_norm("/a/b", "c", "/a/b/c");
  check_norm("/a/b", "../c", "/a/c");
  check_norm("/a/b", "./c/./d/", "/a/b/c/d");
  check_norm("/a/b", "/x//y/../z", "/x/z");
  check_norm("/a", "../../..", "/");
  check_norm("/", ".", "/");
  check_norm("/a/b/", "", "/a/b");
  check_norm("/a", "b..c/..d", "/a/b..c/..d");
}

/* ---------------------------------------------------------------------- */
/* The walk: each visit appends "depth kind rel;" to a log. */

typedef struct walk_log {
  char text[4096];
  const char *prune; /* a rel not to enter */
  const char *stop;  /* a rel that ends the walk */
  char fails[1024];
} walk_log;

static int log_visit(const mw_fs_entry *e, void *arg) {
  walk_log *l = arg;
  static const char kinds[] = {'f', 'd', 'o'};
  size_t n = strlen(l->text);
  snprintf(l->text + n, sizeof l->text - n, "%d%c %s;", e->depth, kinds[e->kind],
           e->rel);
  /* the parts agree with each other */
  size_t rl = strlen(root);
  MW_CHECK(strncmp(e->path, root, rl) == 0 && e->path[rl] == '/' &&
           strcmp(e->path + rl + 1, e->rel) == 0);
  MW_CHECK(strcmp(e->name, strrchr(e->path, '/') + 1) == 0);
  if (l->prune && strcmp(e->rel, l->prune) == 0) return MW_FS_WALK_PRUNE;
  if (l->stop && strcmp(e->rel, l->stop) == 0) return MW_FS_WALK_STOP;
  return MW_FS_WALK_NEXT;
}

static void log_fail(const mw_fs_entry *dir, int err, void *arg) {
  walk_log *l = arg;
  size_t n = strlen(l->fails);
  snprintf(l->fails + n, sizeof l->fails - n, "%d %s %s;", dir->depth,
           dir->depth < 0 ? "(root)" : dir->rel, strerror(err));
}

static int walk(walk_log *l, int max_depth, int follow) {
  mw_fs_walk_opts o = {max_depth, follow, log_visit, log_fail, l};
  return mw_fs_walk(root, &o);
}

/* root/
 *   a/ x.proto  .hidden  deep/ y.pb
 *   b.txt
 *   c.lua
 *   .git/ config
 *   dangling -> nowhere
 *   link -> a
 *   link.lua -> c.lua */
static void make_tree(void) {
  make_dir("a");
  write_file("a/x.proto", "", 0);
  write_file("a/.hidden", "", 0);
  make_dir("a/deep");
  write_file("a/deep/y.pb", "", 0);
  write_file("b.txt", "", 0);
  write_file("c.lua", "", 0);
  make_dir(".git");
  write_file(".git/config", "", 0);
  link_to("nowhere", "dangling");
  link_to("a", "link");
  link_to("c.lua", "link.lua");
}

static void test_walk(void) {
  make_tree();
  walk_log l = {{0}, NULL, NULL, {0}};
  /* sorted, a directory before what it holds, hidden entries skipped,
   * links not followed */
  MW_CHECK_INT(walk(&l, 32, 0), 0);
  MW_CHECK_STR(l.text, "0d a;1d a/deep;2f a/deep/y.pb;1f a/x.proto;0f b.txt;"
                       "0f c.lua;0o dangling;0o link;0o link.lua;");
  MW_CHECK_STR(l.fails, "");

  /* links followed: the linked directory is walked under its own name */
  memset(&l, 0, sizeof l);
  MW_CHECK_INT(walk(&l, 32, 1), 0);
  MW_CHECK_STR(l.text, "0d a;1d a/deep;2f a/deep/y.pb;1f a/x.proto;0f b.txt;"
                       "0f c.lua;0o dangling;0d link;1d link/deep;"
                       "2f link/deep/y.pb;1f link/x.proto;0f link.lua;");

  /* the depth limit: directories at max_depth are visited, not entered */
  memset(&l, 0, sizeof l);
  MW_CHECK_INT(walk(&l, 0, 0), 0);
  MW_CHECK_STR(l.text, "0d a;0f b.txt;0f c.lua;0o dangling;0o link;0o link.lua;");
  memset(&l, 0, sizeof l);
  MW_CHECK_INT(walk(&l, 1, 0), 0);
  MW_CHECK_STR(l.text, "0d a;1d a/deep;1f a/x.proto;0f b.txt;0f c.lua;"
                       "0o dangling;0o link;0o link.lua;");

  /* pruning one directory, stopping at an entry */
  memset(&l, 0, sizeof l);
  l.prune = "a";
  MW_CHECK_INT(walk(&l, 32, 0), 0);
  MW_CHECK_STR(l.text, "0d a;0f b.txt;0f c.lua;0o dangling;0o link;0o link.lua;");
  memset(&l, 0, sizeof l);
  l.stop = "a/x.proto";
  MW_CHECK_INT(walk(&l, 32, 0), -1);
  MW_CHECK_STR(l.text, "0d a;1d a/deep;2f a/deep/y.pb;1f a/x.proto;");
}

static void test_walk_failures(void) {
  walk_log l = {{0}, NULL, NULL, {0}};
  char p[PATH_MAX];
  /* a root that is not there: nothing visited, the root named by depth -1 */
  mw_fs_walk_opts o = {32, 0, log_visit, log_fail, &l};
  MW_CHECK_INT(mw_fs_walk(at(p, "missing"), &o), -1);
  MW_CHECK_STR(l.text, "");
  MW_CHECK_STR(l.fails, "-1 (root) No such file or directory;");
  /* without a fail callback, still -1 */
  o.fail = NULL;
  MW_CHECK_INT(mw_fs_walk(at(p, "missing"), &o), -1);

  if (geteuid() == 0) return; /* root reads any directory */
  make_dir("a");
  make_dir("a/locked");
  write_file("a/locked/x.proto", "", 0);
  write_file("b.txt", "", 0);
  chmod(at(p, "a/locked"), 0);
  memset(&l, 0, sizeof l);
  /* the walk goes on after an unreadable directory, and says so */
  MW_CHECK_INT(walk(&l, 32, 0), -1);
  MW_CHECK_STR(l.text, "0d a;1d a/locked;0f b.txt;");
  MW_CHECK_STR(l.fails, "1 a/locked Permission denied;");
  chmod(at(p, "a/locked"), 0755);
}

/* ---------------------------------------------------------------------- */

static void test_list(void) {
  char p[PATH_MAX], q[PATH_MAX];
  write_file("z.lua", "", 0);
  write_file("a.lua", "", 0);
  write_file("b.txt", "", 0);
  write_file(".h.lua", "", 0);
  write_file("greeter.lua.swp", "", 0);
  make_dir("sub.lua");
  write_file("sub.lua/inner.lua", "", 0);
  link_to("a.lua", "link.lua");
  link_to("nowhere.lua", "dangling.lua");

  mw_strvec out = {0};
  MW_CHECK_INT(mw_strvec_push(&out, "kept"), 0);
  int err = -1;
  MW_CHECK_INT(mw_fs_list(root, ".lua", &out, &err), 0);
  /* appended: regular files (links followed) with the suffix, sorted */
  MW_CHECK_INT(out.n, 4);
  if (out.n == 4) {
    MW_CHECK_STR(out.v[0], "kept");
    MW_CHECK_STR(out.v[1], at(p, "a.lua"));
    MW_CHECK_STR(out.v[2], at(p, "link.lua"));
    MW_CHECK_STR(out.v[3], at(p, "z.lua"));
  }
  mw_strvec_free(&out);

  /* every file */
  MW_CHECK_INT(mw_fs_list(root, NULL, &out, NULL), 0);
  MW_CHECK_INT(out.n, 5);
  if (out.n == 5) {
    MW_CHECK_STR(out.v[1], at(p, "b.txt"));
    MW_CHECK_STR(out.v[2], at(p, "greeter.lua.swp"));
  }
  mw_strvec_free(&out);

  /* a dir given with a trailing slash: no doubled slash */
  snprintf(q, sizeof q, "%s/sub.lua/", root);
  /* (the directory itself is root/sub.lua) */
  MW_CHECK_INT(mw_fs_list(q, ".lua", &out, NULL), 0);
  MW_CHECK_INT(out.n, 1);
  if (out.n) MW_CHECK_STR(out.v[0], at(p, "sub.lua/inner.lua"));
  mw_strvec_free(&out);

  /* an unreadable dir: -1, errno, out as it was */
  MW_CHECK_INT(mw_strvec_push(&out, "kept"), 0);
  MW_CHECK_INT(mw_fs_list(at(p, "missing"), ".lua", &out, &err), -1);
  MW_CHECK_INT(err, ENOENT);
  MW_CHECK_INT(out.n, 1);
  MW_CHECK_INT(mw_fs_list(at(p, "b.txt"), ".lua", &out, &err), -1);
  MW_CHECK_INT(err, ENOTDIR);
  MW_CHECK_INT(out.n, 1);
  mw_strvec_free(&out);
}

int main(void) {
  setup();
  MW_RUN(test_read);
  MW_RUN(test_join);
  setup();
  MW_RUN(test_walk);
  setup();
  MW_RUN(test_walk_failures);
  setup();
  MW_RUN(test_list);
  return mw_test_done();
}
