/* Files and paths: one whole-file reader, the path joins, and one directory
 * walker that the listing is built on. */
#include "base/mw_fs.h"
#include "base/mw_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------- */
/* Reading */

mw_fs_status mw_fs_read(const char *path, size_t max, char **data,
                        size_t *len, int *err) {
  int ignored;
  if (!err) err = &ignored;
  *data = NULL;
  *len = 0;
  *err = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return MW_FS_EOPEN;
  }
  mw_fs_status st = MW_FS_OK;
  char *buf = NULL;
  size_t n = 0, cap = 4096;
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    *err = errno;
    st = MW_FS_EREAD;
    goto out;
  }
  if (S_ISDIR(sb.st_mode)) {
    *err = EISDIR;
    st = MW_FS_EISDIR;
    goto out;
  }
  /* The size is a hint (the file may change while it is read): room for
   * it, the NUL, and the byte that lets the last read see the end without
   * a reallocation. */
  if (S_ISREG(sb.st_mode) && sb.st_size > 0 &&
      (uintmax_t)sb.st_size < SIZE_MAX / 4 &&
      (!max || (uintmax_t)sb.st_size <= max))
    cap = (size_t)sb.st_size + 2;
  buf = malloc(cap);
  if (!buf) goto oom;
  for (;;) {
    if (n + 1 >= cap) { /* keep a byte for the NUL */
      if (cap > SIZE_MAX / 2) goto oom;
      char *nb = realloc(buf, cap * 2);
      if (!nb) goto oom;
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      st = MW_FS_EREAD;
      goto out;
    }
    if (r == 0) break;
    n += (size_t)r;
    if (max && n > max) {
      *err = EFBIG;
      st = MW_FS_EBIG;
      goto out;
    }
  }
  buf[n] = '\0';
  *data = buf;
  *len = n;
  buf = NULL;
  goto out;
oom:
  *err = ENOMEM;
  st = MW_FS_ENOMEM;
out:
  free(buf);
  close(fd);
  return st;
}

/* ---------------------------------------------------------------------- */
/* Paths */

char *mw_fs_join(const char *dir, const char *name) {
  size_t dl = strlen(dir), nl = strlen(name);
  int slash = dl > 0 && dir[dl - 1] != '/';
  char *p = malloc(dl + (size_t)slash + nl + 1);
  if (!p) return NULL;
  memcpy(p, dir, dl);
  if (slash) p[dl] = '/';
  memcpy(p + dl + (size_t)slash, name, nl + 1);
  return p;
}

char *mw_fs_join_norm(const char *base, const char *rel) {
  size_t bl = rel[0] == '/' ? 0 : strlen(base);
  size_t rl = strlen(rel);
  char *tmp = malloc(bl + rl + 2);
  char *out = malloc(bl + rl + 2);
  if (!tmp || !out) {
    free(tmp);
    free(out);
    return NULL;
  }
  memcpy(tmp, base, bl);
  tmp[bl] = '/';
  memcpy(tmp + bl + 1, rel, rl + 1);

  size_t o = 0; /* out holds "/a/b" (no trailing slash) */
  const char *p = tmp;
  while (*p) {
    while (*p == '/') p++;
    const char *s = p;
    while (*p && *p != '/') p++;
    size_t n = (size_t)(p - s);
    if (n == 0 || (n == 1 && s[0] == '.')) continue;
    if (n == 2 && s[0] == '.' && s[1] == '.') {
      while (o > 0 && out[o - 1] != '/') o--;
      if (o > 0) o--; /* drop the slash too */
      continue;
    }
    out[o++] = '/';
    memcpy(out + o, s, n);
    o += n;
  }
  if (o == 0) out[o++] = '/';
  out[o] = '\0';
  free(tmp);
  return out;
}

/* ---------------------------------------------------------------------- */
/* Walking */

typedef struct walk {
  const mw_fs_walk_opts *o;
  const char *root;
  int rc;
} walk;

static void walk_fail(walk *w, const mw_fs_entry *dir, int err) {
  w->rc = -1;
  if (w->o->fail) w->o->fail(dir, err, w->o->arg);
}

/* The names in path that are not hidden, sorted. The directory is closed
 * before the caller goes deeper, so a deep tree holds one descriptor. */
static int read_names(const char *path, mw_strvec *names, int *err) {
  DIR *d = opendir(path);
  if (!d) {
    *err = errno;
    return -1;
  }
  int rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    if (!e) {
      if (errno) {
        *err = errno;
        rc = -1;
      }
      break;
    }
    if (e->d_name[0] == '.') continue;
    if (mw_strvec_push(names, e->d_name) != 0) {
      *err = ENOMEM;
      rc = -1;
      break;
    }
  }
  closedir(d);
  if (rc == 0 && mw_strvec_sort(names) != 0) {
    *err = ENOMEM;
    rc = -1;
  }
  return rc;
}

static mw_fs_kind kind_of(const char *path, int follow) {
  struct stat st;
  if ((follow ? stat(path, &st) : lstat(path, &st)) != 0) return MW_FS_OTHER;
  if (S_ISDIR(st.st_mode)) return MW_FS_DIR;
  return S_ISREG(st.st_mode) ? MW_FS_FILE : MW_FS_OTHER;
}

/* Lists dir (an entry already visited, or the root) and goes down. Returns
 * -1 when a visit stopped the walk. */
static int walk_dir(walk *w, const mw_fs_entry *dir) {
  mw_strvec names = {0};
  int err = 0;
  if (read_names(dir->path, &names, &err) != 0) {
    walk_fail(w, dir, err);
    mw_strvec_free(&names);
    return 0;
  }
  int depth = dir->depth + 1, stop = 0;
  for (size_t i = 0; !stop && i < names.n; i++) {
    char *rel = depth ? mw_fs_join(dir->rel, names.v[i]) : strdup(names.v[i]);
    char *path = rel ? mw_fs_join(w->root, rel) : NULL;
    if (!path) {
      walk_fail(w, dir, ENOMEM);
    } else {
      mw_fs_entry e = {path, rel, rel + strlen(rel) - strlen(names.v[i]),
                       depth, kind_of(path, w->o->follow_links)};
      int r = w->o->visit(&e, w->o->arg);
      if (r == MW_FS_WALK_STOP)
        stop = 1;
      else if (e.kind == MW_FS_DIR && r != MW_FS_WALK_PRUNE &&
               depth < w->o->max_depth)
        stop = walk_dir(w, &e) != 0;
    }
    free(rel);
    free(path);
  }
  mw_strvec_free(&names);
  return stop ? -1 : 0;
}

int mw_fs_walk(const char *root, const mw_fs_walk_opts *o) {
  walk w = {o, root, 0};
  mw_fs_entry top = {root, "", root, -1, MW_FS_DIR};
  if (walk_dir(&w, &top) != 0) return -1;
  return w.rc;
}

typedef struct list_ctx {
  const char *suffix;
  mw_strvec *out;
  int err;
} list_ctx;

static int list_visit(const mw_fs_entry *e, void *arg) {
  list_ctx *c = arg;
  if (e->kind != MW_FS_FILE || (c->suffix && !mw_has_suffix(e->name, c->suffix)))
    return MW_FS_WALK_NEXT;
  if (mw_strvec_push(c->out, e->path) != 0) {
    c->err = ENOMEM;
    return MW_FS_WALK_STOP;
  }
  return MW_FS_WALK_NEXT;
}

static void list_fail(const mw_fs_entry *dir, int err, void *arg) {
  list_ctx *c = arg;
  c->err = err;
}

int mw_fs_list(const char *dir, const char *suffix, mw_strvec *out, int *err) {
  size_t n0 = out->n;
  list_ctx c = {suffix, out, 0};
  mw_fs_walk_opts o = {0, 1, list_visit, list_fail, &c};
  int rc = mw_fs_walk(dir, &o);
  if (rc != 0) {
    /* all or nothing: what this call appended goes again */
    while (out->n > n0) free(out->v[--out->n]);
    if (err) *err = c.err ? c.err : EIO;
  }
  return rc;
}
