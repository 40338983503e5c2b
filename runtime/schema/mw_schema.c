/* Schema loading: every service directory's .proto files go through one
 * protoc run (a serialized FileDescriptorSet with --include_imports), its
 * *.pb / *.protoset files are read as they are, and every file descriptor
 * goes into one upb_DefPool owned by the schema. */
#include "schema/mw_schema.h"
#include "schema/mw_protos.h"
#include "base/mw_embedded.h"
#include "base/mw_fs.h"
#include "base/mw_strvec.h"
#include "base/mw_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "google/protobuf/descriptor.upb.h"
#include "base/mw_log.h"
#include "upb/upb.h"

#ifndef MW_PROTOC
#define MW_PROTOC "protoc"
#endif

/* Deeper than this below a service directory is taken for a symlink loop. */
#define MW_SCHEMA_MAX_DEPTH 32

/* ---------------------------------------------------------------------- */
/* Small helpers */

/* A malloc'd formatted string (caller owns), or NULL on OOM. */
static char *str_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (len < 0) return NULL;
  char *s = malloc((size_t)len + 1);
  if (!s) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)len + 1, fmt, ap);
  va_end(ap);
  return s;
}

/* path made absolute against the current directory, symlinks kept (caller
 * owns). */
static char *abs_path(const char *path) {
  if (path[0] == '/') return strdup(path);
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return strdup(path);
  return mw_fs_join(cwd, path);
}

/* The canonical absolute path (caller owns): realpath, or abs_path when the
 * file cannot be resolved. */
static char *canonical_path(const char *path) {
  char *r = realpath(path, NULL);
  return r ? r : abs_path(path);
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---------------------------------------------------------------------- */
/* protoc and its include paths */

/* The protoc to run (caller owns): $MOONWIRE_PROTOC, else MW_PROTOC; a bare
 * name is looked up in $PATH (execv does not search). */
static char *protoc_path(void) {
  const char *p = getenv("MOONWIRE_PROTOC");
  if (!p || !*p) p = MW_PROTOC;
  if (strchr(p, '/')) return strdup(p);
  const char *path = getenv("PATH");
  if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    const char *end = strchr(path, ':');
    size_t n = end ? (size_t)(end - path) : strlen(path);
    char *dir = n ? strndup(path, n) : strdup(".");
    char *cand = dir ? mw_fs_join(dir, p) : NULL;
    free(dir);
    if (cand && access(cand, X_OK) == 0 && is_file(cand)) return cand;
    free(cand);
    if (!end) break;
    path = end + 1;
  }
  return strdup(p); /* execv fails and that is reported as "not found" */
}

/* "<protoc's bin dir>/../include" when it holds the well-known types
 * (caller owns), else NULL. */
static char *wkt_dir_next_to(const char *protoc) {
  const char *slash = strrchr(protoc, '/');
  if (!slash) return NULL;
  char *bin = strndup(protoc, (size_t)(slash - protoc)); /* freed below */
  if (!bin) return NULL;
  const char *up = strrchr(bin, '/');
  char *inc = up ? str_printf("%.*s/include", (int)(up - bin), bin)
                 : strdup("include");
  free(bin);
  if (!inc) return NULL;
  char *any = mw_fs_join(inc, "google/protobuf/any.proto");
  int ok = any && is_file(any);
  free(any);
  if (ok) return inc;
  free(inc);
  return NULL;
}

/* The well-known types' include dir (caller owns), or NULL. */
static char *wkt_dir(const char *protoc) {
  char *d = wkt_dir_next_to(protoc);
  if (d) return d;
  char *real = realpath(protoc, NULL); /* freed below */
  if (real) {
    d = wkt_dir_next_to(real);
    free(real);
    if (d) return d;
  }
  if (is_file("/usr/include/google/protobuf/any.proto"))
    return strdup("/usr/include");
  return NULL;
}

/* protoc's include paths in order: the caller's, then the project's proto/
 * and the well-known types (each only when it exists and is not already
 * there). */
typedef struct inc_list {
  mw_strvec disp; /* as given, for messages the user can open */
  mw_strvec abs;  /* absolute, for protoc (run in a temp dir) and lookups */
  size_t n_user;  /* the caller's includes are the first n_user */
} inc_list;

static void inc_list_free(inc_list *l) {
  mw_strvec_free(&l->disp);
  mw_strvec_free(&l->abs);
  l->n_user = 0;
}

/* Appends dir (taking ownership) unless already listed. */
static int inc_list_add_extra(inc_list *l, char *dir) {
  if (!dir) return 0;
  char *a = abs_path(dir);
  if (!a) {
    free(dir);
    return -1;
  }
  if (mw_strvec_has(&l->abs, a)) {
    free(a);
    free(dir);
    return 0;
  }
  if (mw_strvec_take(&l->disp, dir) != 0) {
    free(a);
    return -1;
  }
  return mw_strvec_take(&l->abs, a);
}

static int inc_list_build(inc_list *l, const char *const *includes, size_t n,
                          const char *protoc) {
  for (size_t i = 0; i < n; i++) {
    if (mw_strvec_push(&l->disp, includes[i]) != 0 ||
        mw_strvec_take(&l->abs, abs_path(includes[i])) != 0)
      return -1;
  }
  l->n_user = n;
  const char *embedded = mw_protos_dir();
  char *proj = embedded ? strdup(embedded) : NULL;
  if (proj && !is_dir(proj)) {
    free(proj);
    proj = NULL;
  }
  size_t before = l->disp.n;
  if (inc_list_add_extra(l, proj) != 0) return -1;
  /* The private copy's temp path means nothing to a user: messages name
   * its files "(built in)/grpc/health/v1/health.proto". */
  const char *env = getenv("MOONWIRE_PROTO_DIR");
  if (l->disp.n > before && !(env && *env)) {
    char *shown = strdup("(built in)");
    if (!shown) return -1;
    free(l->disp.v[before]);
    l->disp.v[before] = shown;
  }
  return inc_list_add_extra(l, wkt_dir(protoc));
}

/* Index of the first include holding the file name (protoc's own lookup
 * order), or -1. */
static long inc_find(const inc_list *l, const char *name) {
  if (!*name || name[0] == '/') return -1;
  for (size_t i = 0; i < l->abs.n; i++) {
    char *p = mw_fs_join(l->abs.v[i], name);
    int ok = p && is_file(p);
    free(p);
    if (ok) return (long)i;
  }
  return -1;
}

/* One line of protoc's output as a diag message: "name.proto:12:5: msg"
 * gets the include dir in front of the name, so the path opens from here;
 * "x.proto: File not found." gets the list of places searched. */
static void add_protoc_line(mw_diag *d, const char *line, size_t len,
                            const inc_list *incs) {
  const char *colon = memchr(line, ':', len);
  if (colon && colon > line) {
    char *name = strndup(line, (size_t)(colon - line)); /* freed below */
    const char *rest = colon;
    int rest_len = (int)(len - (size_t)(colon - line));
    long k = name ? inc_find(incs, name) : -1;
    char *shown = k >= 0 ? mw_fs_join(incs->disp.v[k], name) : NULL;
    if (shown) {
      mw_diag_add(d, "%s%.*s", shown, rest_len, rest);
      free(shown);
      free(name);
      return;
    }
    if (name && (size_t)rest_len == strlen(": File not found.") &&
        memcmp(rest, ": File not found.", (size_t)rest_len) == 0) {
      size_t total = 1;
      for (size_t i = 0; i < incs->disp.n; i++)
        total += strlen(incs->disp.v[i]) + 2;
      char *paths = calloc(1, total); /* freed below */
      if (paths) {
        for (size_t i = 0; i < incs->disp.n; i++) {
          if (i) strcat(paths, ", ");
          strcat(paths, incs->disp.v[i]);
        }
        mw_diag_add(d, "%s: File not found (import paths: %s).", name,
                    paths);
        free(paths);
        free(name);
        return;
      }
    }
    free(name);
  }
  mw_diag_add(d, "%.*s", (int)len, line);
}

/* Moves fd to target in the child, clearing close-on-exec either way.
 * Only async-signal-safe calls: this runs between fork and exec. */
static void child_move_fd(int fd, int target) {
  if (fd == target)
    fcntl(target, F_SETFD, 0);
  else
    dup2(fd, target);
}

static void set_cloexec(int fd) { fcntl(fd, F_SETFD, FD_CLOEXEC); }

/* Runs protoc over files with incs; returns the serialized set (caller
 * owns; *len set) or NULL with messages in diag. */
static char *protoc_run(const char *protoc, const char *const *files,
                        size_t n_files, const inc_list *incs, size_t *len,
                        mw_diag *diag) {
  char *result = NULL;
  mw_strvec args = {0}; /* the malloc'd argv strings */
  char **argv = NULL;  /* pointers into args and files; array owned here */
  char *tmpdir = NULL, *out_path = NULL, *output = NULL;
  size_t out_len = 0, out_cap = 0;
  int devnull = -1, outp[2] = {-1, -1}, errp[2] = {-1, -1};
  mw_diag lines = {0}; /* protoc's output, rewritten */

  const char *tmp = getenv("TMPDIR");
  if (!tmp || !*tmp) tmp = "/tmp";
  tmpdir = mw_fs_join(tmp, "moonwire-protoc-XXXXXX");
  if (!tmpdir) goto oom;
  if (!mkdtemp(tmpdir)) {
    mw_diag_add(diag, "cannot create a temporary directory in %s: %s", tmp,
                strerror(errno));
    free(tmpdir);
    tmpdir = NULL;
    goto done;
  }
  out_path = mw_fs_join(tmpdir, "set.pb");
  if (!out_path) goto oom;

  /* protoc -I<abs>... --include_imports --descriptor_set_out=<tmp> files */
  if (mw_strvec_push(&args, protoc) != 0) goto oom;
  for (size_t i = 0; i < incs->abs.n; i++)
    if (mw_strvec_take(&args, str_printf("-I%s", incs->abs.v[i])) != 0) goto oom;
  if (mw_strvec_push(&args, "--include_imports") != 0 ||
      mw_strvec_take(&args, str_printf("--descriptor_set_out=%s", out_path)) != 0)
    goto oom;
  argv = calloc(args.n + n_files + 1, sizeof *argv);
  if (!argv) goto oom;
  for (size_t i = 0; i < args.n; i++) argv[i] = args.v[i];
  for (size_t i = 0; i < n_files; i++) argv[args.n + i] = (char *)files[i];

  devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0 || pipe(outp) != 0 || pipe(errp) != 0) {
    mw_diag_add(diag, "cannot run protoc: %s", strerror(errno));
    goto done;
  }
  set_cloexec(outp[0]);
  set_cloexec(outp[1]);
  set_cloexec(errp[0]);
  set_cloexec(errp[1]);

  pid_t pid = fork();
  if (pid < 0) {
    mw_diag_add(diag, "cannot run protoc: fork: %s", strerror(errno));
    goto done;
  }
  if (pid == 0) {
    /* The child: stdin from /dev/null, stdout and stderr into the pipe, the
     * current directory an empty temp dir (so that protoc never takes a
     * file name for a path relative to ours). On failure the errno goes
     * back through errp, which exec closes on success. */
    int fail[2];
    child_move_fd(devnull, 0);
    child_move_fd(outp[1], 1);
    child_move_fd(outp[1], 2);
    if (chdir(tmpdir) != 0) {
      fail[0] = 0;
      fail[1] = errno;
    } else {
      execv(protoc, argv);
      fail[0] = 1;
      fail[1] = errno;
    }
    if (write(errp[1], fail, sizeof fail) < 0) {
      /* nothing more to do */
    }
    _exit(127);
  }
  close(outp[1]);
  outp[1] = -1;
  close(errp[1]);
  errp[1] = -1;

  int fail[2];
  ssize_t got;
  do {
    got = read(errp[0], fail, sizeof fail);
  } while (got < 0 && errno == EINTR);
  int exec_failed = got == (ssize_t)sizeof fail;

  /* All of protoc's output, until it closes the pipe. */
  for (;;) {
    if (out_len == out_cap) {
      size_t cap = out_cap ? out_cap * 2 : 4096;
      char *nb = realloc(output, cap);
      if (!nb) break; /* keep what we have; the pipe is drained below */
      output = nb;
      out_cap = cap;
    }
    ssize_t r = read(outp[0], output + out_len, out_cap - out_len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out_len += (size_t)r;
  }
  close(outp[0]); /* protoc gets SIGPIPE if it still writes after OOM */
  outp[0] = -1;

  int status = 0;
  pid_t w;
  do {
    w = waitpid(pid, &status, 0);
  } while (w < 0 && errno == EINTR);

  if (exec_failed) {
    if (fail[0] == 0)
      mw_diag_add(diag, "cannot run protoc: chdir %s: %s", tmpdir,
                  strerror(fail[1]));
    else if (fail[1] == ENOENT)
      mw_diag_add(diag,
                  "protoc not found: %s does not exist (install "
                  "protobuf-compiler, or set MOONWIRE_PROTOC to protoc's "
                  "path)",
                  protoc);
    else
      mw_diag_add(diag, "cannot run protoc (%s): %s", protoc,
                  strerror(fail[1]));
    goto done;
  }

  for (size_t i = 0; i < out_len;) {
    const char *line = output + i;
    const char *nl = memchr(line, '\n', out_len - i);
    size_t n = nl ? (size_t)(nl - line) : out_len - i;
    i += n + 1;
    if (n > 0 && line[n - 1] == '\r') n--;
    if (n > 0) add_protoc_line(&lines, line, n, incs);
  }

  if (w < 0) {
    mw_diag_add(diag, "cannot run protoc: waitpid: %s", strerror(errno));
    goto done;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    /* Success; what protoc said is warnings (e.g. an unused import). */
    for (size_t i = 0; i < lines.n; i++)
      if (lines.msgs[i]) mw_log(MW_LOG_WARN, "protoc: %s", lines.msgs[i]);
    int err = 0;
    if (mw_fs_read(out_path, 0, &result, len, &err) != MW_FS_OK)
      mw_diag_add(diag, "cannot read protoc's output %s: %s", out_path,
                  strerror(err));
    goto done;
  }
  if (mw_diag_count(&lines) == 0) {
    if (WIFSIGNALED(status))
      mw_diag_add(diag, "protoc (%s) was killed by signal %d", protoc,
                  WTERMSIG(status));
    else
      mw_diag_add(diag, "protoc (%s) failed with exit status %d", protoc,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  mw_diag_move(diag, &lines);
  goto done;

oom:
  mw_diag_add(diag, "cannot run protoc: out of memory");
done:
  mw_diag_free(&lines);
  if (devnull >= 0) close(devnull);
  for (int i = 0; i < 2; i++) {
    if (outp[i] >= 0) close(outp[i]);
    if (errp[i] >= 0) close(errp[i]);
  }
  if (out_path) unlink(out_path);
  if (tmpdir) rmdir(tmpdir);
  free(out_path);
  free(tmpdir);
  free(output);
  free(argv);
  mw_strvec_free(&args);
  return result;
}

char *mw_protoc_compile(const char *const *files, size_t n_files,
                        const char *const *includes, size_t n_includes,
                        size_t *len, mw_diag *diag) {
  size_t ignored;
  if (!len) len = &ignored;
  *len = 0;
  if (n_files == 0) {
    mw_diag_add(diag, "protoc: no .proto files to compile");
    return NULL;
  }
  char *protoc = protoc_path(); /* freed below */
  inc_list incs = {0};
  char *result = NULL;
  if (!protoc || inc_list_build(&incs, includes, n_includes, protoc) != 0)
    mw_diag_add(diag, "cannot run protoc: out of memory");
  else
    result = protoc_run(protoc, files, n_files, &incs, len, diag);
  inc_list_free(&incs);
  free(protoc);
  return result;
}

/* ---------------------------------------------------------------------- */
/* The schema */

#define NO_OWNER (-1L)  /* loaded only as an import */
#define API_OWNER (-2L) /* added by mw_schema_add_set */

/* What the schema knows about one file of the pool. */
typedef struct file_rec {
  char *name;      /* its name in the pool (owned) */
  char *origin;    /* where it came from, for messages (owned) */
  char *proto;     /* its FileDescriptorProto, serialized (owned) */
  size_t proto_len;
  uint64_t hash;   /* of its serialized descriptor, when from protoc */
  int from_protoc; /* compiled by us (so the hash compares) */
  long owner;      /* the input that lists it as its own, or NO_OWNER */
} file_rec;

struct mw_schema {
  upb_DefPool *pool;               /* owned */
  const upb_ServiceDef **services; /* array owned; the defs belong to pool */
  size_t n_services, cap_services;
  mw_strvec files; /* absolute paths of the inputs, for the watcher */
  file_rec *recs;  /* owned, with their strings; one per pool file */
  size_t n_recs, cap_recs;
};

/* Where a descriptor set comes from. */
typedef struct set_src {
  const char *origin;    /* the set, for messages */
  long input;            /* the input claiming its files (dir index) */
  const mw_strvec *own;  /* sorted names of the input's own files; NULL: all */
  const inc_list *incs;  /* protoc output: the includes it was built with */
} set_src;

mw_schema *mw_schema_new(void) {
  mw_schema *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->pool = upb_DefPool_New();
  if (!s->pool) {
    free(s);
    return NULL;
  }
  return s;
}

static atomic_uint schema_epoch;

unsigned mw_schema_epoch(void) {
  return atomic_load_explicit(&schema_epoch, memory_order_acquire);
}

void mw_schema_epoch_bump(void) {
  atomic_fetch_add_explicit(&schema_epoch, 1, memory_order_acq_rel);
}

void mw_schema_free(mw_schema *s) {
  if (!s) return;
  if (s->pool) {
    mw_schema_epoch_bump();
    upb_DefPool_Free(s->pool);
  }
  free(s->services);
  mw_strvec_free(&s->files);
  for (size_t i = 0; i < s->n_recs; i++) {
    free(s->recs[i].name);
    free(s->recs[i].origin);
    free(s->recs[i].proto);
  }
  free(s->recs);
  free(s);
}

const upb_DefPool *mw_schema_pool(const mw_schema *s) {
  return s ? s->pool : NULL;
}

size_t mw_schema_service_count(const mw_schema *s) {
  return s ? s->n_services : 0;
}

const upb_ServiceDef *mw_schema_service(const mw_schema *s, size_t i) {
  return s && i < s->n_services ? s->services[i] : NULL;
}

size_t mw_schema_file_count(const mw_schema *s) { return s ? s->files.n : 0; }

const char *mw_schema_file(const mw_schema *s, size_t i) {
  return s && i < s->files.n ? s->files.v[i] : NULL;
}

const char *mw_schema_file_proto(const mw_schema *s, const char *name, size_t *len) {
  for (size_t i = 0; s && i < s->n_recs; i++) {
    if (strcmp(s->recs[i].name, name) == 0) {
      *len = s->recs[i].proto_len;
      return s->recs[i].proto;
    }
  }
  return NULL;
}

size_t mw_schema_pool_file_count(const mw_schema *s) { return s ? s->n_recs : 0; }

const char *mw_schema_pool_file(const mw_schema *s, size_t i) {
  return s && i < s->n_recs ? s->recs[i].name : NULL;
}

/* Adds a path (taking ownership) to the watcher's list, once. */
static int record_file(mw_schema *s, char *path) {
  if (!path) return -1;
  if (mw_strvec_has(&s->files, path)) {
    free(path);
    return 0;
  }
  return mw_strvec_take(&s->files, path);
}

static file_rec *find_rec(mw_schema *s, const char *name) {
  for (size_t i = 0; i < s->n_recs; i++)
    if (strcmp(s->recs[i].name, name) == 0) return &s->recs[i];
  return NULL;
}

/* Adds a record, taking ownership of name and origin (freed on failure). */
static file_rec *push_rec(mw_schema *s, char *name, char *origin,
                          uint64_t hash, int from_protoc) {
  if (s->n_recs == s->cap_recs) {
    size_t cap = s->cap_recs ? s->cap_recs * 2 : 16;
    file_rec *v = realloc(s->recs, cap * sizeof *v);
    if (!v) {
      free(name);
      free(origin);
      return NULL;
    }
    s->recs = v;
    s->cap_recs = cap;
  }
  file_rec *r = &s->recs[s->n_recs++];
  r->name = name;
  r->origin = origin;
  r->proto = NULL;
  r->proto_len = 0;
  r->hash = hash;
  r->from_protoc = from_protoc;
  r->owner = NO_OWNER;
  return r;
}

static int push_service(mw_schema *s, const upb_ServiceDef *svc) {
  if (s->n_services == s->cap_services) {
    size_t cap = s->cap_services ? s->cap_services * 2 : 8;
    const upb_ServiceDef **v = realloc(s->services, cap * sizeof *v);
    if (!v) return -1;
    s->services = v;
    s->cap_services = cap;
  }
  s->services[s->n_services++] = svc;
  return 0;
}

/* The origin recorded for the pool file holding a def, for messages. */
static const char *origin_of(mw_schema *s, const upb_FileDef *f) {
  const char *name = upb_FileDef_Name(f);
  file_rec *r = find_rec(s, name);
  return r ? r->origin : name;
}

/* The input claims a loaded file as its own: its services join the list.
 * A file claimed by two inputs that defines services is a duplicate. */
static int claim_file(mw_schema *s, file_rec *rec, const upb_FileDef *f,
                      long input, const char *origin, mw_diag *diag) {
  if (rec->owner == NO_OWNER) {
    rec->owner = input;
    for (int i = 0; i < upb_FileDef_ServiceCount(f); i++) {
      if (push_service(s, upb_FileDef_Service(f, i)) != 0) {
        mw_diag_add(diag, "%s: out of memory", origin);
        return -1;
      }
    }
    return 0;
  }
  if (rec->owner == input || upb_FileDef_ServiceCount(f) == 0) return 0;
  for (int i = 0; i < upb_FileDef_ServiceCount(f); i++) {
    mw_diag_add(diag, "duplicate service '%s': defined in %s and in %s",
                upb_ServiceDef_FullName(upb_FileDef_Service(f, i)),
                rec->origin, origin);
  }
  return -1;
}

/* upb's message for a failed AddFile; a duplicate symbol gets the file that
 * has it already (upb names only the symbol). */
static void add_upb_error(mw_schema *s, mw_diag *diag, const char *origin,
                          const char *msg) {
  static const char dup[] = "duplicate symbol '";
  if (strncmp(msg, dup, sizeof dup - 1) == 0) {
    const char *sym = msg + sizeof dup - 1;
    const char *end = strchr(sym, '\'');
    char *name = end ? strndup(sym, (size_t)(end - sym)) : NULL;
    const upb_FileDef *other =
        name ? upb_DefPool_FindFileContainingSymbol(s->pool, name) : NULL;
    free(name);
    if (other) {
      mw_diag_add(diag, "%s: %s (already defined in %s)", origin, msg,
                  origin_of(s, other));
      return;
    }
  }
  mw_diag_add(diag, "%s: %s", origin, msg);
}

/* A map entry message (options.map_entry) that is not {key = 1, value = 2}:
 * upb 1.51 looks those two numbers up without checking and crashes on a
 * missing one. protoc writes every entry so; only a hand-made set differs.
 * Returns the first such message, or NULL; nesting is as deep as
 * upb's parser let the set be. */
static const google_protobuf_DescriptorProto *bad_map_entry(
    const google_protobuf_DescriptorProto *const *msgs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const google_protobuf_DescriptorProto *m = msgs[i];
    if (google_protobuf_DescriptorProto_has_options(m) &&
        google_protobuf_MessageOptions_map_entry(
            google_protobuf_DescriptorProto_options(m))) {
      size_t nf = 0;
      const google_protobuf_FieldDescriptorProto *const *f =
          google_protobuf_DescriptorProto_field(m, &nf);
      int32_t a = nf == 2 ? google_protobuf_FieldDescriptorProto_number(f[0]) : 0;
      int32_t b = nf == 2 ? google_protobuf_FieldDescriptorProto_number(f[1]) : 0;
      if (!((a == 1 && b == 2) || (a == 2 && b == 1))) return m;
    }
    size_t nn = 0;
    const google_protobuf_DescriptorProto *const *nested =
        google_protobuf_DescriptorProto_nested_type(m, &nn);
    const google_protobuf_DescriptorProto *bad = bad_map_entry(nested, nn);
    if (bad) return bad;
  }
  return NULL;
}

/* Loads one file of a set into the pool (or finds it there). */
static int load_file(mw_schema *s, const google_protobuf_FileDescriptorProto *fd,
                     upb_Arena *arena, const set_src *src, mw_diag *diag) {
  upb_StringView nv = google_protobuf_FileDescriptorProto_name(fd);
  if (nv.size == 0) {
    mw_diag_add(diag, "%s: the descriptor set holds a file without a name",
                src->origin);
    return -1;
  }
  /* The pool keeps all the name's bytes, the C strings here would stop at
   * a NUL: the same file would be two names (and a second load of the set
   * a "duplicate file name"). No .proto file is named so. */
  if (memchr(nv.data, '\0', nv.size)) {
    mw_diag_add(diag, "%s: the descriptor set holds a file whose name "
                      "contains a NUL byte",
                src->origin);
    return -1;
  }
  char *name = strndup(nv.data, nv.size); /* owned; moves into a file_rec */
  char *origin = NULL;                    /* likewise */
  if (!name) goto oom;
  int own = !src->own || mw_strvec_has_sorted(src->own, name);
  /* The file as loaded: hashed to tell protoc's files apart, kept for
   * reflection. In the arena, freed with the set. */
  size_t n_bytes = 0;
  char *bytes = google_protobuf_FileDescriptorProto_serialize(fd, arena, &n_bytes);

  uint64_t hash = 0;
  if (src->incs) {
    /* protoc output: the file is on disk below one of the includes. */
    long k = inc_find(src->incs, name);
    if (k >= 0) {
      origin = mw_fs_join(src->incs->disp.v[k], name);
      if ((size_t)k < src->incs->n_user) {
        char *p = mw_fs_join(src->incs->abs.v[k], name);
        int rc = p ? record_file(s, canonical_path(p)) : -1;
        free(p);
        if (rc != 0) goto oom;
      }
    } else {
      origin = strdup(name);
    }
    if (bytes) hash = mw_fnv1a(bytes, n_bytes);
  } else if (mw_has_suffix(src->origin, name) || strcmp(src->origin, name) == 0) {
    origin = strdup(src->origin);
  } else {
    origin = str_printf("%s (%s)", src->origin, name);
  }
  if (!origin) goto oom;

  const upb_FileDef *f = upb_DefPool_FindFileByName(s->pool, name);
  file_rec *rec = find_rec(s, name);
  if (f) {
    /* Already loaded (a shared import, or a set repeating a .proto). Two
     * different files under one name would silently mix; protoc output is
     * deterministic, so a different hash means a different file. */
    if (src->incs && rec && rec->from_protoc && rec->hash != hash) {
      mw_diag_add(diag,
                  "%s: another file named '%s' is already loaded from %s",
                  origin, name, rec->origin);
      goto fail;
    }
  } else {
    /* A service defined twice is reported with both files (upb would only
     * say "duplicate symbol"). */
    size_t ns = 0;
    const google_protobuf_ServiceDescriptorProto *const *svcs =
        google_protobuf_FileDescriptorProto_service(fd, &ns);
    upb_StringView pkg = google_protobuf_FileDescriptorProto_package(fd);
    int dup = 0;
    for (size_t i = 0; i < ns; i++) {
      upb_StringView sn = google_protobuf_ServiceDescriptorProto_name(svcs[i]);
      char *full = pkg.size ? str_printf("%.*s.%.*s", (int)pkg.size, pkg.data,
                                         (int)sn.size, sn.data)
                            : str_printf("%.*s", (int)sn.size, sn.data);
      if (!full) goto oom;
      const upb_ServiceDef *old = upb_DefPool_FindServiceByName(s->pool, full);
      if (old) {
        mw_diag_add(diag, "duplicate service '%s': defined in %s and in %s",
                    full, origin_of(s, upb_ServiceDef_File(old)), origin);
        dup = 1;
      }
      free(full);
    }
    if (dup) goto fail;

    size_t nm = 0;
    const google_protobuf_DescriptorProto *const *top =
        google_protobuf_FileDescriptorProto_message_type(fd, &nm);
    const google_protobuf_DescriptorProto *bad = bad_map_entry(top, nm);
    if (bad) {
      upb_StringView bn = google_protobuf_DescriptorProto_name(bad);
      mw_diag_add(diag, "%s: map entry message '%.*s' must have exactly the "
                        "fields key = 1 and value = 2",
                  origin, bn.size > 200 ? 200 : (int)bn.size, bn.data);
      goto fail;
    }
    upb_Status status;
    upb_Status_Clear(&status);
    f = upb_DefPool_AddFile(s->pool, fd, &status);
    if (!f) {
      add_upb_error(s, diag, origin, upb_Status_ErrorMessage(&status));
      goto fail;
    }
    rec = push_rec(s, name, origin, hash, src->incs != NULL);
    name = origin = NULL; /* owned by the record now (or freed) */
    if (!rec) goto oom;
    /* Kept for reflection, which hands files out as they were loaded. */
    if (!bytes || !(rec->proto = malloc(n_bytes ? n_bytes : 1))) goto oom;
    memcpy(rec->proto, bytes, n_bytes);
    rec->proto_len = n_bytes;
  }
  if (own && !rec) goto oom; /* a pool file without a record: OOM earlier */
  int rc = own ? claim_file(s, rec, f, src->input,
                            origin ? origin : rec->origin, diag)
               : 0;
  free(name);
  free(origin);
  return rc;

oom:
  mw_diag_add(diag, "%s: out of memory", src->origin);
fail:
  free(name);
  free(origin);
  return -1;
}

/* Parses a serialized FileDescriptorSet and loads its files in order; stops
 * at the first file that fails (the later ones would fail on it). */
static int add_set(mw_schema *s, const char *data, size_t len,
                   const set_src *src, mw_diag *diag) {
  /* The parsed set lives in this arena, freed below: the pool copies what it
   * keeps. */
  upb_Arena *arena = upb_Arena_New();
  if (!arena) {
    mw_diag_add(diag, "%s: out of memory", src->origin);
    return -1;
  }
  int rc = 0;
  google_protobuf_FileDescriptorSet *set =
      google_protobuf_FileDescriptorSet_parse(data, len, arena);
  size_t n = 0;
  const google_protobuf_FileDescriptorProto *const *fds =
      set ? google_protobuf_FileDescriptorSet_file(set, &n) : NULL;
  if (!set) {
    mw_diag_add(diag,
                "%s: not a descriptor set (a serialized "
                "google.protobuf.FileDescriptorSet)",
                src->origin);
    rc = -1;
  } else if (n == 0 && !src->incs) {
    mw_diag_add(diag,
                "%s: not a descriptor set (a serialized "
                "google.protobuf.FileDescriptorSet): it holds no files",
                src->origin);
    rc = -1;
  }
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = load_file(s, fds[i], arena, src, diag);
  upb_Arena_Free(arena);
  return rc;
}

int mw_schema_add_set(mw_schema *s, const char *data, size_t len,
                      const char *origin, mw_diag *diag) {
  set_src src = {origin ? origin : "descriptor set", API_OWNER, NULL, NULL};
  return add_set(s, data, len, &src, diag);
}

/* Generated at build time (build/gen/mw_rpc_types.c): one descriptor set. */
extern const mw_embedded mw_rpc_types[];
extern const size_t mw_rpc_types_count;

int mw_schema_add_rpc_types(mw_schema *s, mw_diag *diag) {
  /* A pool that has both already (a service shipping googleapis' files)
   * keeps its own: adding ours would only repeat them. */
  if (upb_DefPool_FindMessageByName(s->pool, "google.rpc.Status") &&
      upb_DefPool_FindMessageByName(s->pool, "google.rpc.LocalizedMessage"))
    return 0;
  for (size_t i = 0; i < mw_rpc_types_count; i++) {
    if (mw_schema_add_set(s, mw_rpc_types[i].data, mw_rpc_types[i].len,
                          "(built in) google/rpc", diag) != 0)
      return -1;
  }
  return 0;
}

/* What a walk of one service directory collects: the .proto names relative
 * to it and the paths of descriptor sets. */
typedef struct dir_scan {
  const char *root;
  mw_strvec *protos, *sets;
  mw_diag *diag;
  int failed;
} dir_scan;

static int scan_visit(const mw_fs_entry *e, void *arg) {
  dir_scan *s = arg;
  if (e->kind == MW_FS_DIR) {
    /* the walk lists no deeper: say why the files below are missing */
    if (e->depth >= MW_SCHEMA_MAX_DEPTH) {
      mw_diag_add(s->diag, "%s: directories nested too deep (a symlink loop?)",
                  e->path);
      s->failed = 1;
    }
    return MW_FS_WALK_NEXT;
  }
  /* MW_FS_OTHER: e.g. a dangling link (an editor's lock file), not an input */
  if (e->kind != MW_FS_FILE) return MW_FS_WALK_NEXT;
  int rc = 0;
  if (mw_has_suffix(e->name, ".proto"))
    rc = mw_strvec_push(s->protos, e->rel);
  else if (mw_has_suffix(e->name, ".pb") || mw_has_suffix(e->name, ".protoset"))
    rc = mw_strvec_push(s->sets, e->path);
  if (rc == 0) return MW_FS_WALK_NEXT;
  mw_diag_add(s->diag, "%s: out of memory", s->root);
  s->failed = 1;
  return MW_FS_WALK_STOP;
}

static void scan_fail(const mw_fs_entry *dir, int err, void *arg) {
  dir_scan *s = arg;
  if (err == ENOMEM)
    mw_diag_add(s->diag, "%s: out of memory", s->root);
  else
    mw_diag_add(s->diag, "%s: cannot read %sdirectory: %s", dir->path,
                dir->depth < 0 ? "service " : "", strerror(err));
}

/* Collects, below root, the .proto names relative to root and the paths of
 * descriptor sets, each sorted. Hidden entries (editor and VCS files) are
 * skipped, links followed. Returns -1 with diag filled on any problem. */
static int scan_dir(const char *root, mw_strvec *protos, mw_strvec *sets,
                    mw_diag *diag) {
  dir_scan s = {root, protos, sets, diag, 0};
  mw_fs_walk_opts o = {MW_SCHEMA_MAX_DEPTH, 1, scan_visit, scan_fail, &s};
  if (mw_fs_walk(root, &o) != 0 || s.failed) return -1;
  mw_strvec_sort(protos);
  mw_strvec_sort(sets);
  return 0;
}

mw_schema *mw_schema_load(const mw_schema_input *in, mw_diag *diag) {
  static const mw_schema_input none = {NULL, 0, NULL, 0, NULL, 0};
  if (!in) in = &none;
  size_t before = mw_diag_count(diag);
  mw_schema *s = mw_schema_new();
  char *protoc = protoc_path(); /* freed below */
  /* Per dir: the descriptor sets found, loaded in the second pass. */
  mw_strvec *sets = calloc(in->n_dirs ? in->n_dirs : 1, sizeof *sets);
  const char **incs_in = calloc(1 + in->n_proto_path, sizeof *incs_in);
  if (!s || !protoc || !sets || !incs_in) {
    mw_diag_add(diag, "cannot load the schema: out of memory");
    goto out;
  }
  for (size_t i = 0; i < in->n_proto_path; i++) {
    struct stat st;
    if (stat(in->proto_path[i], &st) != 0)
      mw_diag_add(diag, "proto_path %s: %s", in->proto_path[i],
                  strerror(errno));
    else if (!S_ISDIR(st.st_mode))
      mw_diag_add(diag, "proto_path %s: not a directory", in->proto_path[i]);
    incs_in[1 + i] = in->proto_path[i];
  }
  if (mw_diag_count(diag) != before) goto out;

  /* Pass 1: each dir's .proto files, one protoc run per dir. */
  for (size_t i = 0; i < in->n_dirs; i++) {
    const char *dir = in->dirs[i];
    mw_strvec protos = {0};
    if (scan_dir(dir, &protos, &sets[i], diag) != 0) {
      mw_strvec_free(&protos);
      mw_strvec_free(&sets[i]); /* the load fails anyway: no follow-up noise */
      continue;
    }
    for (size_t k = 0; k < protos.n; k++) {
      char *p = mw_fs_join(dir, protos.v[k]);
      if (!p || record_file(s, canonical_path(p)) != 0)
        mw_diag_add(diag, "%s: out of memory", dir);
      free(p);
    }
    if (protos.n) {
      inc_list incs = {0};
      incs_in[0] = dir;
      size_t len = 0;
      char *data = NULL; /* the compiled set, freed below */
      if (inc_list_build(&incs, incs_in, 1 + in->n_proto_path, protoc) != 0)
        mw_diag_add(diag, "%s: out of memory", dir);
      else
        data = protoc_run(protoc, (const char *const *)protos.v, protos.n,
                          &incs, &len, diag);
      if (data) {
        set_src src = {dir, (long)i, &protos, &incs};
        add_set(s, data, len, &src, diag);
      }
      free(data);
      inc_list_free(&incs);
    }
    mw_strvec_free(&protos);
  }

  /* Pass 1b: the named protos, from the proto_path alone. */
  if (in->n_protos) {
    mw_strvec protos = {0};
    inc_list incs = {0};
    int ok = 1;
    for (size_t k = 0; ok && k < in->n_protos; k++)
      ok = mw_strvec_push(&protos, in->protos[k]) == 0;
    mw_strvec_sort(&protos);
    if (!ok || inc_list_build(&incs, incs_in + 1, in->n_proto_path, protoc) != 0) {
      mw_diag_add(diag, "protos: out of memory");
    } else {
      for (size_t k = 0; k < protos.n; k++) {
        long at = inc_find(&incs, protos.v[k]);
        if (at < 0 || (size_t)at >= incs.n_user) continue; /* protoc reports it */
        char *p = mw_fs_join(incs.abs.v[at], protos.v[k]);
        if (!p || record_file(s, canonical_path(p)) != 0)
          mw_diag_add(diag, "protos: out of memory");
        free(p);
      }
      size_t len = 0;
      char *data = protoc_run(protoc, (const char *const *)protos.v, protos.n,
                              &incs, &len, diag); /* freed below */
      if (data) {
        set_src src = {"protos", (long)in->n_dirs, &protos, &incs};
        add_set(s, data, len, &src, diag);
      }
      free(data);
    }
    inc_list_free(&incs);
    mw_strvec_free(&protos);
  }

  /* Pass 2: descriptor sets, after all .proto files, so that a set built
   * without --include_imports finds its dependencies. */
  for (size_t i = 0; i < in->n_dirs; i++) {
    for (size_t k = 0; k < sets[i].n; k++) {
      const char *p = sets[i].v[k];
      if (record_file(s, canonical_path(p)) != 0)
        mw_diag_add(diag, "%s: out of memory", p);
      size_t len = 0;
      int err = 0;
      char *data = NULL; /* freed below */
      if (mw_fs_read(p, 0, &data, &len, &err) != MW_FS_OK) {
        mw_diag_add(diag, "%s: %s", p, strerror(err));
        continue;
      }
      set_src src = {p, (long)i, NULL, NULL};
      add_set(s, data, len, &src, diag);
      free(data);
    }
  }

  /* Last, so that the services' own copies of these files come first. */
  if (mw_diag_count(diag) == before) mw_schema_add_rpc_types(s, diag);

out:
  if (sets) {
    for (size_t i = 0; i < in->n_dirs; i++) mw_strvec_free(&sets[i]);
    free(sets);
  }
  free(incs_in);
  free(protoc);
  if (mw_diag_count(diag) != before) {
    mw_schema_free(s);
    return NULL;
  }
  return s;
}
