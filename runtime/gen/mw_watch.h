/* File watching for reloads (inotify): the service directories (recursively),
 * the directories of every schema file, and the config file's directory.
 * Only changes to files that can change a generation count: .lua, .proto,
 * .pb, .protoset and the config file. */
#ifndef MW_WATCH_H
#define MW_WATCH_H

#include <stddef.h>

typedef struct mw_watch mw_watch;

/* NULL when inotify is not available (the caller logs and goes on). */
mw_watch *mw_watch_new(void);
/* Replaces the watched set: dirs recursively, the directories holding files,
 * and config (may be NULL). Returns the number of directories watched. */
int mw_watch_set(mw_watch *w, const char *const *dirs, size_t n_dirs,
                 const char *const *files, size_t n_files, const char *config);
/* The descriptor to poll for readability. */
int mw_watch_fd(const mw_watch *w);
/* Reads the pending events; returns 1 when one of them is relevant. The name
 * of the last relevant file is copied to what (may be NULL). */
int mw_watch_drain(mw_watch *w, char *what, size_t what_len);
void mw_watch_free(mw_watch *w);

#endif
