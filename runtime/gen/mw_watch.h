/* File watching for reloads (inotify): the service directories (recursively),
 * the directories of every schema file, and the config file's directory.
 *
 * Only changes to what a generation is built from count: files named *.lua,
 * *.proto, *.pb, *.protoset, moonwire.yaml or like the config file. A new
 * directory below a service directory is watched from then on, but counts
 * only when it arrives holding such files; a directory that goes away counts
 * when it held some. Hidden entries (editors' temp files, VCS data) never
 * count. */
#ifndef MW_WATCH_H
#define MW_WATCH_H

#include <stddef.h>

typedef struct mw_watch mw_watch;

/* NULL when inotify is not available (the caller logs and goes on). */
mw_watch *mw_watch_new(void);
/* Replaces the watched set: dirs recursively, the directories holding files,
 * and config (may be NULL). Returns the number of directories watched. A
 * directory watched before and after keeps its watch, so that changes made
 * while a generation was being built are still reported. */
int mw_watch_set(mw_watch *w, const char *const *dirs, size_t n_dirs,
                 const char *const *files, size_t n_files, const char *config);
/* The descriptor to poll for readability. */
int mw_watch_fd(const mw_watch *w);
/* Reads the pending events and follows new and removed directories; returns
 * 1 when one of the events is relevant. The name of the last relevant entry
 * is copied to what (may be NULL). */
int mw_watch_drain(mw_watch *w, char *what, size_t what_len);
void mw_watch_free(mw_watch *w);

#endif
