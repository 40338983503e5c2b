/* Files and paths: reading a whole file, joining paths, and walking or
 * listing directories. Every module that touches the file system this way
 * goes through here, so that hidden entries, symlinks and depth limits are
 * treated alike everywhere. */
#ifndef MW_FS_H
#define MW_FS_H

#include <stddef.h>

#include "base/mw_strvec.h"

/* ---------------------------------------------------------------------- */
/* Reading */

/* Why a read failed; *err (an errno value) says more. */
typedef enum mw_fs_status {
  MW_FS_OK = 0,
  MW_FS_EOPEN,  /* the file cannot be opened */
  MW_FS_EREAD,  /* it opened but cannot be read (fstat or read failed) */
  MW_FS_EISDIR, /* it is a directory (err: EISDIR) */
  MW_FS_EBIG,   /* it holds more than max bytes (err: EFBIG) */
  MW_FS_ENOMEM  /* out of memory (err: ENOMEM) */
} mw_fs_status;

/* Reads the file at path into *data (malloc'd, caller owns; NUL-terminated
 * after the *len bytes, so an empty file is not NULL). max > 0 caps the size.
 * On failure *data is NULL, *len 0 and *err (may be NULL) the errno. */
mw_fs_status mw_fs_read(const char *path, size_t max, char **data,
                        size_t *len, int *err);

/* ---------------------------------------------------------------------- */
/* Paths */

/* dir + "/" + name without a doubled slash; name alone when dir is empty.
 * Nothing else is changed. malloc'd (caller owns), NULL on OOM. */
char *mw_fs_join(const char *dir, const char *name);
/* base + "/" + rel (rel alone when absolute), with empty, "." and ".."
 * components folded lexically (symlinks are not resolved): "/a/b" + "../c"
 * is "/a/c". base should be absolute. malloc'd, NULL on OOM. */
char *mw_fs_join_norm(const char *base, const char *rel);

/* ---------------------------------------------------------------------- */
/* Walking */

typedef enum mw_fs_kind {
  MW_FS_FILE,  /* a regular file */
  MW_FS_DIR,   /* a directory */
  MW_FS_OTHER  /* anything else, a dangling link, or one not followed */
} mw_fs_kind;

/* One entry met by a walk. The strings are valid during the callback. */
typedef struct mw_fs_entry {
  const char *path; /* the walk's root joined with rel */
  const char *rel;  /* relative to the root ("" for the root itself) */
  const char *name; /* the last component */
  int depth;        /* 0 for the root's own entries; -1 for the root */
  mw_fs_kind kind;
} mw_fs_entry;

/* What a visit returns. */
enum {
  MW_FS_WALK_NEXT = 0,  /* go on (into the entry, when it is a directory) */
  MW_FS_WALK_PRUNE = 1, /* go on, but not into this directory */
  MW_FS_WALK_STOP = -1  /* end the walk; mw_fs_walk returns -1 */
};

typedef struct mw_fs_walk_opts {
  /* The deepest entries listed: 0 lists the root's entries only. A
   * directory at max_depth is visited but not entered. */
  int max_depth;
  /* Kinds come from stat (links followed) rather than lstat. */
  int follow_links;
  /* Called for every entry, in strcmp order within each directory, a
   * directory before what it holds. Entries whose names start with '.' are
   * skipped: editor, VCS and lock files. */
  int (*visit)(const mw_fs_entry *e, void *arg);
  /* Called when a directory cannot be read (err: its errno, ENOMEM when
   * memory ran out); the walk goes on with the next entry. May be NULL. */
  void (*fail)(const mw_fs_entry *dir, int err, void *arg);
  void *arg;
} mw_fs_walk_opts;

/* Walks the directories below root, depth first. Returns 0, or -1 when a
 * directory could not be read or a visit returned MW_FS_WALK_STOP. */
int mw_fs_walk(const char *root, const mw_fs_walk_opts *o);

/* Appends to out the paths (dir joined with the name) of the regular files
 * directly in dir whose names end with suffix (NULL: every file), in
 * alphabetical (strcmp) order; hidden files are skipped and links followed.
 * Returns 0, or -1 with *err (may be NULL) set when dir cannot be read or
 * memory runs out; out then holds what it held before. */
int mw_fs_list(const char *dir, const char *suffix, mw_strvec *out, int *err);

#endif
