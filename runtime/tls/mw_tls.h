/* TLS material: the server's certificate chain, its private key and the CAs
 * client certificates must chain to, read from PEM files and checked with
 * OpenSSL before gRPC core ever sees them (core would only find a bad file
 * at the first handshake, and then only say that the handshake failed).
 *
 * Two parts:
 * - mw_tls_load: read and check a set of files once (serve and check use
 *   it at start);
 * - mw_tls_source: the set a server hands out, re-read when the files are
 *   replaced. It looks at the files (stat: device, inode, size, mtime) at
 *   most once per interval, from whichever thread asks; a set that loads
 *   and passes every check becomes the current one, a broken one is logged
 *   once and the current set stays.
 *
 * Only this folder includes OpenSSL; nothing here knows gRPC (core/ turns
 * a set into gRPC credentials). */
#ifndef MW_TLS_H
#define MW_TLS_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "base/mw_diag.h"

/* Certificates expiring within this many days load with a warning. */
#define MW_TLS_EXPIRY_WARN_DAYS 14
/* Largest PEM file read (a chain plus a CA bundle stays far below). */
#define MW_TLS_MAX_FILE_BYTES (4u << 20)

/* The files of one set (borrowed strings). client_ca may be NULL. */
typedef struct mw_tls_files {
  const char *cert;      /* the server's certificate, then its chain */
  const char *key;       /* the private key of the certificate */
  const char *client_ca; /* CA certificates for client certificates */
} mw_tls_files;

/* A loaded, checked set. Immutable once made; reference counted, because
 * a source replaces its current set while a reader may still be turning
 * the previous one into credentials. */
typedef struct mw_tls_set {
  char *cert;        /* the certificate file's text, NUL-terminated */
  char *key;         /* the key file's text */
  char *client_ca;   /* the CA file's text; NULL without client_ca */
  char *subject;     /* the leaf's subject (RFC 2253), for logs */
  char not_after[32]; /* "2030-01-31 23:59:59 UTC" */
  int64_t expires;   /* the same, in seconds since the epoch */
  atomic_int refs;   /* the module's: use mw_tls_set_ref/unref */
} mw_tls_set;

/* Reads and checks the files, as of time now (0: the current time):
 * each file exists and holds PEM of the right kind; the key matches the
 * certificate; every certificate of the chain is valid at now; a
 * certificate expiring within MW_TLS_EXPIRY_WARN_DAYS adds a warning; when
 * client_ca is given it holds at least one certificate and the server's
 * chain verifies against it plus the system trust store. Every problem
 * goes to errs as "FILE: problem" (warns: the same, may be NULL). Returns
 * a set with one reference (the caller's), or NULL when there was any
 * problem. */
mw_tls_set *mw_tls_load(const mw_tls_files *f, time_t now, mw_diag *errs,
                        mw_diag *warns);
void mw_tls_set_ref(mw_tls_set *s);
/* Drops one reference; the last frees the set. NULL is ignored. */
void mw_tls_set_unref(mw_tls_set *s);

typedef struct mw_tls_source mw_tls_source;

/* Loads the first set (mw_tls_load; its warnings are logged) and keeps the
 * file names (copied). interval: the least time between two looks at the
 * files, in seconds (0: at every fetch). Returns NULL with errs filled when
 * the first set does not load. */
mw_tls_source *mw_tls_source_new(const mw_tls_files *f, double interval,
                                 mw_diag *errs);

/* The current set when it differs from the one a reader last got: *seen is
 * the reader's record of that (0 before the first fetch, then updated).
 * Looks at the files first when the interval has passed and loads them when
 * they changed: a good set becomes current (logged, with its warnings), a
 * broken one is logged once per change, as warnings naming each file and
 * problem, and the current set stays. Returns a new reference for the
 * caller, or NULL when the reader has the current set already. Any thread;
 * readers are serialised by the source's lock. */
mw_tls_set *mw_tls_source_fetch(mw_tls_source *s, unsigned *seen);

/* Frees the source and its reference to the current set. NULL is ignored;
 * the caller makes sure no fetch runs or follows. */
void mw_tls_source_free(mw_tls_source *s);

#endif
