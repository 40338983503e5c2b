/* Unit tests for mw_watch, on a temporary tree with real inotify: which
 * changes reload (inputs, directories arriving with inputs or leaving with
 * them) and which do not (editors' temp files, new or unrelated
 * directories), and that new directories are watched from then on.
 * inotify queues an event before the call that caused it returns, so every
 * check drains right after the change. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gen/mw_watch.h"
#include "mw_test.h"

static char root[1024]; /* MW_TEST_TMP/watch */
static mw_watch *w;
static char what[256];

static const char *at(char *buf, const char *rel) {
  snprintf(buf, PATH_MAX, "%s/%s", root, rel);
  return buf;
}

static void make_dir(const char *rel) {
  char p[PATH_MAX];
  MW_CHECK_INT(mkdir(at(p, rel), 0755), 0);
}

static void write_file(const char *rel, const char *text) {
  char p[PATH_MAX];
  FILE *f = fopen(at(p, rel), "w");
  MW_CHECK(f != NULL);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static void remove_file(const char *rel) {
  char p[PATH_MAX];
  MW_CHECK_INT(unlink(at(p, rel)), 0);
}

static void move(const char *from, const char *to) {
  char p[PATH_MAX], q[PATH_MAX];
  MW_CHECK_INT(rename(at(p, from), at(q, to)), 0);
}

static void remove_tree(const char *rel) {
  char cmd[2 * PATH_MAX], p[PATH_MAX];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", at(p, rel));
  MW_CHECK_INT(system(cmd), 0);
}

/* The pending events reload, the last relevant one naming name. */
#define EXPECT_RELOAD(name)                                                   \
  do {                                                                        \
    what[0] = '\0';                                                           \
    MW_CHECK_INT(mw_watch_drain(w, what, sizeof what), 1);                    \
    MW_CHECK_STR(what, name);                                                 \
  } while (0)

/* The pending events do not reload. */
#define EXPECT_QUIET()                                                        \
  do {                                                                        \
    what[0] = '\0';                                                           \
    int rc_ = mw_watch_drain(w, what, sizeof what);                           \
    MW_CHECK_INT(rc_, 0);                                                     \
    if (rc_) fprintf(stderr, "  (reloaded for %s)\n", what);                  \
  } while (0)

static int watch_all(void) {
  char svc[PATH_MAX], a[PATH_MAX], b[PATH_MAX], cfg[PATH_MAX];
  const char *dirs[] = {at(svc, "svc")};
  const char *files[] = {at(a, "svc/a.proto"), at(b, "svc/sub/b.proto")};
  return mw_watch_set(w, dirs, 1, files, 2, at(cfg, "conf/app.yaml"));
}

/* A fresh tree, watched:
 *   svc/      a.proto  greeter.lua  sub/ b.proto   (the service directory)
 *   conf/     app.yaml                             (the config's directory)
 *   outside/                                       (not watched) */
static void setup(void) {
  if (w) mw_watch_free(w);
  char cmd[2 * sizeof root + 32];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", root, root);
  MW_CHECK_INT(system(cmd), 0);
  make_dir("svc");
  make_dir("svc/sub");
  make_dir("conf");
  make_dir("outside");
  write_file("svc/a.proto", "syntax = \"proto3\";\n");
  write_file("svc/greeter.lua", "return {}\n");
  write_file("svc/sub/b.proto", "syntax = \"proto3\";\n");
  write_file("conf/app.yaml", "workers: 1\n");
  w = mw_watch_new();
  MW_CHECK(w != NULL);
  MW_CHECK_INT(watch_all(), 3); /* svc, svc/sub, conf */
  EXPECT_QUIET();
}

static void test_inputs_reload(void) {
  setup();
  write_file("svc/greeter.lua", "return {1}\n");
  EXPECT_RELOAD("greeter.lua");
  write_file("svc/sub/b.proto", "syntax = \"proto3\";\n\n");
  EXPECT_RELOAD("b.proto");
  write_file("conf/app.yaml", "workers: 2\n");
  EXPECT_RELOAD("app.yaml");
  write_file("svc/set.pb", "");
  EXPECT_RELOAD("set.pb");
  write_file("svc/more.protoset", "");
  EXPECT_RELOAD("more.protoset");
  write_file("svc/moonwire.yaml", "");
  EXPECT_RELOAD("moonwire.yaml");
  remove_file("svc/a.proto");
  EXPECT_RELOAD("a.proto");
  /* saved by renaming a hidden temp file over it */
  write_file("svc/.greeter.lua.tmp", "return {2}\n");
  move("svc/.greeter.lua.tmp", "svc/greeter.lua");
  EXPECT_RELOAD("greeter.lua");
  /* renamed away, e.g. to a backup name */
  move("svc/greeter.lua", "svc/greeter.lua~");
  EXPECT_RELOAD("greeter.lua");
}

static void test_editor_and_tool_files_do_not_reload(void) {
  setup();
  char p[PATH_MAX];
  write_file("svc/4913", ""); /* vim: can this directory be written? */
  remove_file("svc/4913");
  write_file("svc/.greeter.lua.swp", "");
  write_file("svc/greeter.lua.swp", "");
  write_file("svc/greeter.lua~", "");
  write_file("svc/#greeter.lua#", "");
  MW_CHECK_INT(symlink("user@host.1:1", at(p, "svc/.#greeter.lua")), 0);
  remove_file("svc/.#greeter.lua");
  write_file("svc/sub/notes.txt", "");
  write_file("conf/app.yaml.bak", "");
  write_file("conf/README", "");
  EXPECT_QUIET();
}

static void test_new_directory_is_watched_without_reload(void) {
  setup();
  make_dir("svc/new");
  EXPECT_QUIET();
  write_file("svc/new/c.proto", "");
  EXPECT_RELOAD("c.proto");
  make_dir("svc/new/deeper");
  make_dir("svc/new/deeper/deepest");
  EXPECT_QUIET();
  write_file("svc/new/deeper/deepest/d.lua", "");
  EXPECT_RELOAD("d.lua");
  /* an empty directory going away held nothing */
  make_dir("svc/empty");
  EXPECT_QUIET();
  MW_CHECK_INT(rmdir(at((char[PATH_MAX]){0}, "svc/empty")), 0);
  EXPECT_QUIET();
  /* the config's directory is watched for its files only */
  make_dir("conf/more");
  EXPECT_QUIET();
  write_file("conf/more/x.proto", "");
  EXPECT_QUIET();
}

static void test_node_modules_does_not_reload(void) {
  setup();
  make_dir("svc/node_modules");
  make_dir("svc/node_modules/left-pad");
  write_file("svc/node_modules/left-pad/package.json", "{}\n");
  write_file("svc/node_modules/left-pad/index.js", "\n");
  make_dir("svc/node_modules/.bin");
  EXPECT_QUIET();
  move("svc/node_modules", "outside/node_modules");
  EXPECT_QUIET();
  move("outside/node_modules", "svc/node_modules");
  EXPECT_QUIET();
  remove_tree("svc/node_modules");
  EXPECT_QUIET();
}

static void test_directory_moved_in_with_inputs_reloads(void) {
  setup();
  make_dir("outside/pkg");
  make_dir("outside/pkg/inner");
  write_file("outside/pkg/inner/m.proto", "");
  write_file("outside/pkg/readme.txt", "");
  move("outside/pkg", "svc/pkg");
  EXPECT_RELOAD("pkg");
  /* and it is watched, down to its subdirectories */
  write_file("svc/pkg/inner/m.proto", "x");
  EXPECT_RELOAD("m.proto");
  write_file("svc/pkg/readme.txt", "x");
  EXPECT_QUIET();
  /* one holding nothing a generation is built from */
  make_dir("outside/docs");
  write_file("outside/docs/index.md", "");
  move("outside/docs", "svc/docs");
  EXPECT_QUIET();
}

static void test_directory_moved_away_with_inputs_reloads(void) {
  setup();
  move("svc/sub", "outside/sub");
  EXPECT_RELOAD("sub");
  /* no longer watched */
  write_file("outside/sub/b.proto", "x");
  EXPECT_QUIET();

  /* inputs held deeper down count too; here they arrived after the watch */
  make_dir("svc/outer");
  make_dir("svc/outer/inner");
  EXPECT_QUIET();
  write_file("svc/outer/inner/x.lua", "");
  EXPECT_RELOAD("x.lua");
  move("svc/outer", "outside/outer");
  EXPECT_RELOAD("outer");

  /* moved within the service directory: its old place and its new one */
  make_dir("svc/here");
  write_file("svc/here/y.proto", "");
  EXPECT_RELOAD("here"); /* it held y.proto by the time it was read */
  move("svc/here", "svc/there");
  EXPECT_RELOAD("there");
  write_file("svc/there/y.proto", "x");
  EXPECT_RELOAD("y.proto");
}

static void test_removed_directory(void) {
  setup();
  /* its files go first, and they are inputs */
  remove_tree("svc/sub");
  EXPECT_RELOAD("b.proto");
  make_dir("svc/sub");
  EXPECT_QUIET();
  write_file("svc/sub/b.proto", "");
  EXPECT_RELOAD("b.proto");
}

static void test_service_directory_moved_reloads(void) {
  setup();
  move("svc", "outside/svc");
  EXPECT_RELOAD("");
}

static void test_set_again(void) {
  setup();
  /* the same set again: the same directories, still reporting */
  MW_CHECK_INT(watch_all(), 3);
  write_file("svc/greeter.lua", "x");
  EXPECT_RELOAD("greeter.lua");
  /* a directory created since is found by the new set's walk */
  make_dir("svc/later");
  EXPECT_QUIET();
  MW_CHECK_INT(watch_all(), 4);
  write_file("svc/later/z.proto", "");
  EXPECT_RELOAD("z.proto");
  /* an event queued before the set is still reported after it */
  write_file("svc/greeter.lua", "y");
  MW_CHECK_INT(watch_all(), 4);
  EXPECT_RELOAD("greeter.lua");

  /* another set: the directories left out are no longer watched */
  char other[PATH_MAX];
  const char *dirs[] = {at(other, "outside")};
  MW_CHECK_INT(mw_watch_set(w, dirs, 1, NULL, 0, NULL), 1);
  write_file("svc/greeter.lua", "z");
  write_file("conf/app.yaml", "z");
  EXPECT_QUIET();
  write_file("outside/o.lua", "");
  EXPECT_RELOAD("o.lua");
}

static void test_depth_limit(void) {
  setup();
  /* svc/deep is 1 below svc; directories down to 32 below are watched */
  char rel[PATH_MAX] = "svc/deep";
  make_dir(rel);
  for (int depth = 2; depth <= 40; depth++) {
    strcat(rel, "/d");
    make_dir(rel);
  }
  EXPECT_QUIET();
  MW_CHECK_INT(watch_all(), 3 + 32);
  /* svc/deep/d... with 31 /d is 32 below svc */
  char at32[256] = "svc/deep", at33[256];
  for (int i = 0; i < 31; i++) strcat(at32, "/d");
  strcpy(at33, at32);
  strcat(at33, "/d/x.proto");
  strcat(at32, "/x.proto");
  write_file(at32, "");
  EXPECT_RELOAD("x.proto");
  write_file(at33, "");
  EXPECT_QUIET();
}

int main(void) {
  snprintf(root, sizeof root, "%s/watch", MW_TEST_TMP);
  MW_RUN(test_inputs_reload);
  MW_RUN(test_editor_and_tool_files_do_not_reload);
  MW_RUN(test_new_directory_is_watched_without_reload);
  MW_RUN(test_node_modules_does_not_reload);
  MW_RUN(test_directory_moved_in_with_inputs_reloads);
  MW_RUN(test_directory_moved_away_with_inputs_reloads);
  MW_RUN(test_removed_directory);
  MW_RUN(test_service_directory_moved_reloads);
  MW_RUN(test_set_again);
  MW_RUN(test_depth_limit);
  mw_watch_free(w);
  return mw_test_done();
}
