/* Writing the embedded protos out for protoc (see mw_protos.h). */
#include "schema/mw_protos.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mw_embedded.h"
#include "base/mw_fs.h"
#include "base/mw_strvec.h"

/* Generated at build time (build/gen/): the project's proto/, and gRPC's
 * own protos of the standard services. */
extern const mw_embedded mw_project_protos[];
extern const size_t mw_project_protos_count;
extern const mw_embedded mw_grpc_protos[];
extern const size_t mw_grpc_protos_count;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char *dir;        /* the private copy (owned), NULL when not written */
static mw_strvec made;   /* what was created, files then dirs, for cleanup */

static void remove_copy(void) {
  for (size_t i = made.n; i-- > 0;) remove(made.v[i]);
  mw_strvec_free(&made);
  free(dir);
  dir = NULL;
}

/* Creates the directories of rel below root, remembering each new one. */
static int make_parents(const char *root, const char *rel) {
  char *path = mw_fs_join(root, rel);
  if (!path) return -1;
  for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
    *p = 0;
    if (mkdir(path, 0700) == 0) mw_strvec_push(&made, path);
    *p = '/';
  }
  free(path);
  return 0;
}

static void write_copy(void) {
  const char *tmp = getenv("TMPDIR");
  char *d = mw_fs_join(tmp && *tmp ? tmp : "/tmp", "moonwire-proto-XXXXXX");
  if (!d || !mkdtemp(d)) {
    free(d);
    return;
  }
  dir = d;
  mw_strvec_push(&made, d);
  atexit(remove_copy);
  const mw_embedded *sets[] = {mw_project_protos, mw_grpc_protos};
  size_t counts[] = {mw_project_protos_count, mw_grpc_protos_count};
  for (size_t k = 0; k < 2; k++) {
    for (size_t i = 0; i < counts[k]; i++) {
      const mw_embedded *e = &sets[k][i];
      char *path = mw_fs_join(d, e->path);
      FILE *f = path && make_parents(d, e->path) == 0 ? fopen(path, "wb") : NULL;
      int ok = f && fwrite(e->data, 1, e->len, f) == e->len;
      if (f && fclose(f) != 0) ok = 0;
      if (f) mw_strvec_push(&made, path);
      free(path);
      if (!ok) {
        remove_copy();
        return;
      }
    }
  }
}

const char *mw_protos_dir(void) {
  const char *env = getenv("MOONWIRE_PROTO_DIR");
  if (env && *env) return env;
  pthread_once(&once, write_copy);
  return dir;
}
