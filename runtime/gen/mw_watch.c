/* File watching: one inotify descriptor, and the list of the directories it
 * watches. Each directory remembers how deep it is below its service
 * directory (new subdirectories are followed only there) and whether it has
 * held an input, so that moving it away can be judged once it is gone. */
#include "gen/mw_watch.h"
#include "base/mw_fs.h"
#include "base/mw_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_MASK                                                             \
  (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |      \
   IN_DELETE_SELF | IN_MOVE_SELF)
/* Deeper below a service directory than the schema reads (a symlink loop,
 * or a tree nothing is built from). */
#define MAX_DEPTH 32
#define NONE ((size_t)-1)

typedef struct wdir {
  int wd;
  char *path; /* owned */
  int depth;  /* below its service directory (0: that directory itself);
                 -1: watched for its own files only, not followed down.
                 At 0 or -1 its parent may be unwatched: its own removal
                 counts. Deeper, its parent's events judge it. */
  int inputs; /* it has held an input file (see is_input) */
  int keep;   /* mw_watch_set: still wanted */
} wdir;

struct mw_watch {
  int fd;
  wdir *dirs; /* owned */
  size_t n, cap;
  char *config_name; /* basename of the config file (owned), or NULL */
};

/* What a generation is built from, by file name. */
static const char *const input_suffixes[] = {".lua", ".proto", ".pb", ".protoset",
                                             ".stubs.yaml", ".stubs.yml", ".stubs.json",
                                             NULL};

/* A stub file of a stubs/ folder (lua/moonwire/stub.lua): any .yaml, .yml
 * or .json directly in a directory of that name. */
static int is_stub_in(const char *dir, const char *name) {
  const char *base = strrchr(dir, '/');
  base = base ? base + 1 : dir;
  if (name[0] == '.' || strcmp(base, "stubs") != 0) return 0;
  return mw_has_suffix(name, ".yaml") || mw_has_suffix(name, ".yml") ||
         mw_has_suffix(name, ".json");
}

/* is_stub_in for a file's whole path ("dir/stubs/name"). */
static int is_stub_path(const char *path, const char *name) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path) return 0;
  size_t n = (size_t)(slash - path);
  if (n < 5 || memcmp(slash - 5, "stubs", 5) != 0 || (n > 5 && slash[-6] != '/')) return 0;
  return is_stub_in("stubs", name);
}

static int is_input(const mw_watch *w, const char *name) {
  if (name[0] == '.') return 0; /* editors' temp files, .git */
  if (w->config_name && strcmp(name, w->config_name) == 0) return 1;
  if (strcmp(name, "moonwire.yaml") == 0) return 1;
  for (const char *const *s = input_suffixes; *s; s++)
    if (mw_has_suffix(name, *s)) return 1;
  return 0;
}

mw_watch *mw_watch_new(void) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return NULL;
  mw_watch *w = calloc(1, sizeof *w);
  if (!w) {
    close(fd);
    return NULL;
  }
  w->fd = fd;
  return w;
}

int mw_watch_fd(const mw_watch *w) { return w->fd; }

static size_t find_wd(const mw_watch *w, int wd) {
  for (size_t i = 0; i < w->n; i++)
    if (w->dirs[i].wd == wd) return i;
  return NONE;
}

static size_t find_path(const mw_watch *w, const char *path) {
  for (size_t i = 0; i < w->n; i++)
    if (strcmp(w->dirs[i].path, path) == 0) return i;
  return NONE;
}

/* Forgets dirs[i]; rm also removes the inotify watch (not when the kernel
 * has dropped it already). */
static void drop_at(mw_watch *w, size_t i, int rm) {
  if (rm) inotify_rm_watch(w->fd, w->dirs[i].wd);
  free(w->dirs[i].path);
  w->dirs[i] = w->dirs[--w->n];
}

/* Watches path (again); returns its index, or NONE when it cannot be
 * watched. */
static size_t add_dir(mw_watch *w, const char *path, int depth) {
  int wd = inotify_add_watch(w->fd, path, WATCH_MASK | IN_ONLYDIR);
  if (wd < 0) return NONE;
  /* The same directory by another name (a link) has the same wd: it is
   * listed once, under the first name. */
  size_t i = find_wd(w, wd);
  if (i == NONE) {
    i = find_path(w, path);
    if (i != NONE) { /* replaced by another directory since it was watched */
      inotify_rm_watch(w->fd, w->dirs[i].wd);
      w->dirs[i].wd = wd;
    }
  }
  if (i == NONE) {
    if (w->n == w->cap) {
      size_t cap = w->cap ? w->cap * 2 : 16;
      wdir *d = realloc(w->dirs, cap * sizeof *d);
      if (!d) return NONE;
      w->dirs = d;
      w->cap = cap;
    }
    char *p = strdup(path);
    if (!p) return NONE;
    i = w->n++;
    w->dirs[i] = (wdir){wd, p, -1, 0, 0};
  } else if (!w->dirs[i].keep && strcmp(w->dirs[i].path, path) != 0) {
    /* a directory moved while its old watch was kept: the new name */
    char *p = strdup(path);
    if (p) {
      free(w->dirs[i].path);
      w->dirs[i].path = p;
    }
  }
  wdir *d = &w->dirs[i];
  d->keep = 1;
  if (depth >= 0 && (d->depth < 0 || depth < d->depth)) d->depth = depth;
  return i;
}

/* A walk adding a tree: parent[k] is the index of the directory whose
 * entries are at walk depth k (NONE when it is not watched). */
typedef struct tree_walk {
  mw_watch *w;
  int depth;      /* of the walk's root below its service directory */
  size_t inputs;  /* input files found */
  size_t parent[MAX_DEPTH + 2];
} tree_walk;

static int tree_visit(const mw_fs_entry *e, void *arg) {
  tree_walk *t = arg;
  if (e->kind == MW_FS_DIR) {
    int depth = t->depth + 1 + e->depth;
    /* watched before it is listed: what appears in it meanwhile is seen */
    if (depth <= MAX_DEPTH)
      t->parent[e->depth + 1] = add_dir(t->w, e->path, depth);
    return MW_FS_WALK_NEXT;
  }
  if (is_input(t->w, e->name) || is_stub_path(e->path, e->name)) {
    size_t i = t->parent[e->depth];
    if (i != NONE) t->w->dirs[i].inputs = 1;
    t->inputs++;
  }
  return MW_FS_WALK_NEXT;
}

/* Watches path, depth levels below its service directory, and what is
 * below it, links not followed. Returns how many input files it holds. */
static size_t add_tree(mw_watch *w, const char *path, int depth) {
  if (depth > MAX_DEPTH) return 0;
  tree_walk t = {w, depth, 0, {0}};
  t.parent[0] = add_dir(w, path, depth);
  /* the deepest entries listed are those of directories at MAX_DEPTH */
  mw_fs_walk_opts o = {MAX_DEPTH - depth, 0, tree_visit, NULL, &t};
  mw_fs_walk(path, &o);
  return t.inputs;
}

/* Forgets path and every watched directory below it (gone, or moved out of
 * sight); returns whether one of them held inputs or was a service
 * directory or one watched for its files. */
static int drop_tree(mw_watch *w, const char *path) {
  size_t len = strlen(path);
  int held = 0;
  for (size_t i = w->n; i-- > 0;) {
    const char *p = w->dirs[i].path;
    if (strncmp(p, path, len) != 0 || (p[len] != '\0' && p[len] != '/'))
      continue;
    held |= w->dirs[i].inputs || w->dirs[i].depth <= 0;
    drop_at(w, i, 1);
  }
  return held;
}

/* The directory part of path (malloc'd): "/" for "/x", NULL when path has
 * no slash or memory runs out. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return NULL;
  return slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
}

int mw_watch_set(mw_watch *w, const char *const *dirs, size_t n_dirs,
                 const char *const *files, size_t n_files, const char *config) {
  /* Kept watches keep their wd: events queued for them still resolve. */
  for (size_t i = 0; i < w->n; i++) {
    w->dirs[i].keep = w->dirs[i].inputs = 0;
    w->dirs[i].depth = -1;
  }
  free(w->config_name);
  w->config_name = NULL;
  if (config) {
    const char *slash = strrchr(config, '/');
    w->config_name = strdup(slash ? slash + 1 : config);
  }
  for (size_t i = 0; i < n_dirs; i++) add_tree(w, dirs[i], 0);
  for (size_t i = 0; i < n_files; i++) {
    char *dir = dir_of(files[i]);
    if (dir) add_dir(w, dir, -1);
    free(dir);
  }
  if (config) {
    char *dir = strchr(config, '/') ? dir_of(config) : strdup(".");
    if (dir) add_dir(w, dir, -1);
    free(dir);
  }
  for (size_t i = w->n; i-- > 0;)
    if (!w->dirs[i].keep) drop_at(w, i, 1);
  return (int)w->n;
}

/* Whether one event is relevant; follows new and removed directories. */
static int handle(mw_watch *w, const struct inotify_event *ev) {
  if (ev->mask & IN_Q_OVERFLOW) return 1; /* events were lost */
  size_t i = find_wd(w, ev->wd);
  if (ev->mask & IN_IGNORED) { /* the kernel dropped the watch */
    if (i != NONE) drop_at(w, i, 0);
    return 0;
  }
  /* A subdirectory's removal is judged on its parent's event, which names
   * it; an unknown wd is one already forgotten. */
  if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF))
    return i != NONE && w->dirs[i].depth <= 0;
  if (!ev->len || ev->name[0] == '.') return 0;
  if (ev->mask & IN_ISDIR) {
    if (i == NONE) return 0;
    char *sub = mw_fs_join(w->dirs[i].path, ev->name);
    if (!sub) return 1; /* cannot follow it: let a reload look */
    int hit = 0;
    if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
      /* only below a service directory are new directories read */
      int depth = w->dirs[i].depth;
      if (depth >= 0) hit = add_tree(w, sub, depth + 1) > 0;
    } else if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
      hit = drop_tree(w, sub);
    }
    free(sub);
    return hit;
  }
  /* A file: judged by its name, even in a directory already forgotten (an
   * event queued before its watch was dropped). */
  if (!is_input(w, ev->name) && !(i != NONE && is_stub_in(w->dirs[i].path, ev->name)))
    return 0;
  if (i != NONE && (ev->mask & (IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)))
    w->dirs[i].inputs = 1;
  return 1;
}

int mw_watch_drain(mw_watch *w, char *what, size_t what_len) {
  int hit = 0;
  char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
  for (;;) {
    ssize_t len = read(w->fd, buf, sizeof buf);
    if (len <= 0) break;
    for (char *p = buf; p < buf + len;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      if (handle(w, ev)) {
        hit = 1;
        if (what && what_len) snprintf(what, what_len, "%s", ev->len ? ev->name : "");
      }
      p += sizeof *ev + ev->len;
    }
  }
  return hit;
}

void mw_watch_free(mw_watch *w) {
  if (!w) return;
  while (w->n) drop_at(w, w->n - 1, 1);
  free(w->dirs);
  free(w->config_name);
  close(w->fd);
  free(w);
}
