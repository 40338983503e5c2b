#include "gen/mw_watch.h"
#include "base/mw_util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define WATCH_MASK                                                             \
  (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |      \
   IN_DELETE_SELF | IN_MOVE_SELF)
#define MAX_DEPTH 32

typedef struct wdir {
  int wd;
  char *path; /* owned */
} wdir;

struct mw_watch {
  int fd;
  wdir *dirs; /* owned */
  size_t n, cap;
  char *config_name; /* basename of the config file (owned), or NULL */
};

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

static void clear(mw_watch *w) {
  for (size_t i = 0; i < w->n; i++) {
    inotify_rm_watch(w->fd, w->dirs[i].wd);
    free(w->dirs[i].path);
  }
  w->n = 0;
  free(w->config_name);
  w->config_name = NULL;
}

static int watched(const mw_watch *w, const char *path) {
  for (size_t i = 0; i < w->n; i++)
    if (strcmp(w->dirs[i].path, path) == 0) return 1;
  return 0;
}

static void add_dir(mw_watch *w, const char *path) {
  if (watched(w, path)) return;
  int wd = inotify_add_watch(w->fd, path, WATCH_MASK | IN_ONLYDIR);
  if (wd < 0) return;
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 16;
    wdir *d = realloc(w->dirs, cap * sizeof *d);
    if (!d) return;
    w->dirs = d;
    w->cap = cap;
  }
  char *p = strdup(path);
  if (!p) return;
  w->dirs[w->n++] = (wdir){wd, p};
}

static void add_tree(mw_watch *w, const char *path, int depth) {
  if (depth > MAX_DEPTH) return;
  add_dir(w, path);
  DIR *d = opendir(path);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char sub[PATH_MAX];
    if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub) continue;
    struct stat st;
    if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) add_tree(w, sub, depth + 1);
  }
  closedir(d);
}

int mw_watch_set(mw_watch *w, const char *const *dirs, size_t n_dirs,
                 const char *const *files, size_t n_files, const char *config) {
  clear(w);
  for (size_t i = 0; i < n_dirs; i++) add_tree(w, dirs[i], 0);
  for (size_t i = 0; i < n_files; i++) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", files[i]);
    char *slash = strrchr(dir, '/');
    if (!slash) continue;
    *slash = 0;
    add_dir(w, dir[0] ? dir : "/");
  }
  if (config) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", config);
    char *slash = strrchr(dir, '/');
    w->config_name = strdup(slash ? slash + 1 : dir);
    if (slash) {
      *slash = 0;
      add_dir(w, dir[0] ? dir : "/");
    } else {
      add_dir(w, ".");
    }
  }
  return (int)w->n;
}


static int relevant(const mw_watch *w, const struct inotify_event *ev) {
  if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW)) return 1;
  if (!ev->len || ev->name[0] == '.') return 0;
  if (ev->mask & IN_ISDIR) return 1; /* a new or removed subdirectory */
  const char *n = ev->name;
  if (w->config_name && strcmp(n, w->config_name) == 0) return 1;
  return mw_has_suffix(n, ".lua") || mw_has_suffix(n, ".proto") || mw_has_suffix(n, ".pb") ||
         mw_has_suffix(n, ".protoset") || strcmp(n, "moonwire.yaml") == 0;
}

int mw_watch_drain(mw_watch *w, char *what, size_t what_len) {
  int hit = 0;
  char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
  for (;;) {
    ssize_t len = read(w->fd, buf, sizeof buf);
    if (len <= 0) break;
    for (char *p = buf; p < buf + len;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      if (relevant(w, ev)) {
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
  clear(w);
  free(w->dirs);
  close(w->fd);
  free(w);
}
