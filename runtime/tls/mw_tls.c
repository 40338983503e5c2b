/* TLS files: loading and checking a set with OpenSSL (mw_tls_load), and the
 * source that re-reads the set when its files are replaced. See mw_tls.h.
 *
 * Messages name the file they are about and, where OpenSSL knows more, end
 * with OpenSSL's own reason ("... : no start line"). */
#include "tls/mw_tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "base/mw_fs.h"
#include "base/mw_log.h"
#include "base/mw_timer.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

/* The reason of OpenSSL's most recent error ("no start line"), or what,
 * when OpenSSL recorded none; clears OpenSSL's error queue of this thread
 * so that the next check starts clean. */
static const char *ssl_reason(char *buf, size_t cap, const char *what) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  snprintf(buf, cap, "%s", r ? r : what);
  ERR_clear_error();
  return buf;
}

/* Reads path whole (NUL-terminated) or reports why not. */
static char *read_pem(const char *path, const char *what, mw_diag *errs) {
  char *data = NULL;
  size_t len = 0;
  int err = 0;
  switch (mw_fs_read(path, MW_TLS_MAX_FILE_BYTES, &data, &len, &err)) {
  case MW_FS_OK:
    return data;
  case MW_FS_EOPEN:
  case MW_FS_EREAD:
    mw_diag_add(errs, "%s: cannot read the %s: %s", path, what, strerror(err));
    break;
  case MW_FS_EISDIR:
    mw_diag_add(errs, "%s: is a directory, not the %s", path, what);
    break;
  case MW_FS_EBIG:
    mw_diag_add(errs, "%s: too large for the %s (over %u bytes)", path, what,
                MW_TLS_MAX_FILE_BYTES);
    break;
  case MW_FS_ENOMEM:
    mw_diag_add(errs, "%s: out of memory", path);
    break;
  }
  return NULL;
}

/* Every certificate in text, in order. Returns the stack (caller frees it
 * with sk_X509_pop_free), NULL with errs filled when there is none or one
 * does not parse. */
static STACK_OF(X509) *parse_certs(const char *path, const char *text,
                                   const char *what, mw_diag *errs) {
  STACK_OF(X509) *certs = sk_X509_new_null();
  BIO *b = BIO_new_mem_buf(text, -1);
  if (!certs || !b) {
    mw_diag_add(errs, "%s: out of memory", path);
    BIO_free(b);
    sk_X509_free(certs);
    return NULL;
  }
  ERR_clear_error();
  for (;;) {
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (!x) break;
    if (!sk_X509_push(certs, x)) {
      X509_free(x);
      break;
    }
  }
  /* The loop ends at the first block that is not a certificate: at the
   * end of the text (OpenSSL says "no start line"), or at a broken one. */
  unsigned long e = ERR_peek_last_error();
  int clean_end = !e || (ERR_GET_LIB(e) == ERR_LIB_PEM &&
                         ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
  char why[160];
  if (!clean_end) {
    mw_diag_add(errs, "%s: certificate %d of the %s does not parse: %s", path,
                sk_X509_num(certs) + 1, what, ssl_reason(why, sizeof why, "?"));
  } else if (sk_X509_num(certs) == 0) {
    mw_diag_add(errs,
                "%s: no certificate in the %s (expected PEM: -----BEGIN "
                "CERTIFICATE-----)",
                path, what);
  }
  ERR_clear_error();
  BIO_free(b);
  if (!clean_end || sk_X509_num(certs) == 0) {
    sk_X509_pop_free(certs, X509_free);
    return NULL;
  }
  return certs;
}

/* Asked for a passphrase: there is nobody to type one. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1;
}

static EVP_PKEY *parse_key(const char *path, const char *text, mw_diag *errs) {
  BIO *b = BIO_new_mem_buf(text, -1);
  if (!b) {
    mw_diag_add(errs, "%s: out of memory", path);
    return NULL;
  }
  ERR_clear_error();
  EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
  BIO_free(b);
  char why[160];
  if (!k) {
    /* OpenSSL 3's decoders say only "unsupported" for text that holds no
     * key at all, so that case is told apart here. */
    if (!strstr(text, "PRIVATE KEY-----"))
      mw_diag_add(errs,
                  "%s: no private key in the key file (expected PEM: "
                  "-----BEGIN PRIVATE KEY-----)",
                  path);
    else if (strstr(text, "ENCRYPTED"))
      mw_diag_add(errs,
                  "%s: the private key is encrypted; a server loads its key "
                  "unattended, so store it without a passphrase",
                  path);
    else
      mw_diag_add(errs, "%s: the private key does not parse: %s", path,
                  ssl_reason(why, sizeof why, "unknown error"));
  }
  ERR_clear_error();
  return k;
}

/* t as "2030-01-31 23:59:59 UTC" and as epoch seconds. */
static void format_time(const ASN1_TIME *t, char *buf, size_t cap,
                        int64_t *epoch) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) {
    snprintf(buf, cap, "(unreadable time)");
    if (epoch) *epoch = 0;
    return;
  }
  strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
  if (epoch) *epoch = (int64_t)timegm(&tm);
}

/* The subject of x (RFC 2253, "CN=localhost,O=Example"), malloc'd. */
static char *subject_of(X509 *x) {
  BIO *b = BIO_new(BIO_s_mem());
  char *out = NULL;
  if (b && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
    char *p;
    long n = BIO_get_mem_data(b, &p);
    out = malloc((size_t)n + 1);
    if (out) {
      memcpy(out, p, (size_t)n);
      out[n] = '\0';
    }
  }
  BIO_free(b);
  if (!out) out = strdup("?");
  return out;
}

/* The validity of every certificate of the chain at now: errors for an
 * expired or not yet valid one, a warning for one expiring soon. */
static void check_dates(const char *path, STACK_OF(X509) *chain, time_t now,
                        mw_diag *errs, mw_diag *warns) {
  time_t soon = now + (time_t)MW_TLS_EXPIRY_WARN_DAYS * 86400;
  for (int i = 0; i < sk_X509_num(chain); i++) {
    X509 *x = sk_X509_value(chain, i);
    char which[64] = "the certificate";
    if (i > 0) snprintf(which, sizeof which, "certificate %d of the chain", i + 1);
    const ASN1_TIME *nb = X509_get0_notBefore(x), *na = X509_get0_notAfter(x);
    char t[40];
    time_t at = now;
    if (X509_cmp_time(nb, &at) > 0) {
      format_time(nb, t, sizeof t, NULL);
      char *subj = subject_of(x);
      mw_diag_add(errs, "%s: %s (%s) is not valid yet: not before %s", path,
                  which, subj, t);
      free(subj);
    }
    if (X509_cmp_time(na, &at) < 0) {
      format_time(na, t, sizeof t, NULL);
      char *subj = subject_of(x);
      mw_diag_add(errs, "%s: %s (%s) has expired: not after %s", path, which,
                  subj, t);
      free(subj);
    } else if (warns && X509_cmp_time(na, &soon) < 0) {
      int64_t end;
      format_time(na, t, sizeof t, &end);
      long days = (long)((end - (int64_t)now) / 86400);
      char *subj = subject_of(x);
      mw_diag_add(warns, "%s: %s (%s) expires in %ld day%s, on %s", path,
                  which, subj, days, days == 1 ? "" : "s", t);
      free(subj);
    }
    ERR_clear_error();
  }
}

/* The server's chain against the client CAs plus the system's trust store,
 * as a client of this server that trusts those would verify it. */
static void check_chain(const mw_tls_files *f, STACK_OF(X509) *chain,
                        STACK_OF(X509) *cas, time_t now, mw_diag *errs) {
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *vc = X509_STORE_CTX_new();
  STACK_OF(X509) *untrusted = sk_X509_new_null();
  if (!store || !vc || !untrusted) {
    mw_diag_add(errs, "%s: out of memory", f->cert);
    goto out;
  }
  for (int i = 0; i < sk_X509_num(cas); i++)
    X509_STORE_add_cert(store, sk_X509_value(cas, i));
  X509_STORE_set_default_paths(store);
  for (int i = 1; i < sk_X509_num(chain); i++)
    sk_X509_push(untrusted, sk_X509_value(chain, i)); /* borrowed */
  ERR_clear_error();
  if (X509_STORE_CTX_init(vc, store, sk_X509_value(chain, 0), untrusted) != 1) {
    char why[160];
    mw_diag_add(errs, "%s: cannot verify the certificate: %s", f->cert,
                ssl_reason(why, sizeof why, "unknown error"));
    goto out;
  }
  /* As a TLS client verifies a server: purpose and trust "ssl_server". */
  X509_STORE_CTX_set_default(vc, "ssl_server");
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(vc), now);
  if (X509_verify_cert(vc) != 1) {
    int err = X509_STORE_CTX_get_error(vc);
    int depth = X509_STORE_CTX_get_error_depth(vc);
    X509 *bad = X509_STORE_CTX_get_current_cert(vc);
    char *subj = bad ? subject_of(bad) : strdup("?");
    mw_diag_add(errs,
                "%s: the certificate does not verify against %s plus the "
                "system's trust store: %s (depth %d, %s)",
                f->cert, f->client_ca, X509_verify_cert_error_string(err), depth,
                subj ? subj : "?");
    free(subj);
  }
out:
  ERR_clear_error();
  sk_X509_free(untrusted); /* the certificates stay the chain's */
  X509_STORE_CTX_free(vc);
  X509_STORE_free(store);
}

/* ------------------------------------------------------------------------ */
/* Loading a set                                                             */

void mw_tls_set_ref(mw_tls_set *s) {
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void mw_tls_set_unref(mw_tls_set *s) {
  if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
    return;
  /* The key's bytes do not linger in freed memory. */
  if (s->key) OPENSSL_cleanse(s->key, strlen(s->key));
  free(s->cert);
  free(s->key);
  free(s->client_ca);
  free(s->subject);
  free(s);
}

mw_tls_set *mw_tls_load(const mw_tls_files *f, time_t now, mw_diag *errs,
                        mw_diag *warns) {
  if (!f->cert || !f->key) { /* the config and the flags make sure of it */
    mw_diag_add(errs, "tls: a certificate and its key are both needed");
    return NULL;
  }
  if (now == 0) now = time(NULL);
  size_t errs0 = mw_diag_count(errs);
  mw_tls_set *s = calloc(1, sizeof *s);
  if (!s) {
    mw_diag_add(errs, "%s: out of memory", f->cert);
    return NULL;
  }
  atomic_init(&s->refs, 1);
  STACK_OF(X509) *chain = NULL, *cas = NULL;
  EVP_PKEY *key = NULL;

  s->cert = read_pem(f->cert, "certificate file", errs);
  if (s->cert) chain = parse_certs(f->cert, s->cert, "certificate file", errs);
  s->key = read_pem(f->key, "key file", errs);
  if (s->key) key = parse_key(f->key, s->key, errs);
  if (f->client_ca) {
    s->client_ca = read_pem(f->client_ca, "client CA file", errs);
    if (s->client_ca)
      cas = parse_certs(f->client_ca, s->client_ca, "client CA file", errs);
  }
  if (chain) {
    X509 *leaf = sk_X509_value(chain, 0);
    s->subject = subject_of(leaf);
    format_time(X509_get0_notAfter(leaf), s->not_after, sizeof s->not_after,
                &s->expires);
    if (key && X509_check_private_key(leaf, key) != 1)
      mw_diag_add(errs,
                  "%s: the private key does not match the certificate in %s "
                  "(%s)",
                  f->key, f->cert, s->subject);
    ERR_clear_error();
    check_dates(f->cert, chain, now, errs, warns);
    /* Verifying an expired chain would only repeat the dates' error. */
    if (cas && mw_diag_count(errs) == errs0) check_chain(f, chain, cas, now, errs);
  }
  sk_X509_pop_free(chain, X509_free);
  sk_X509_pop_free(cas, X509_free);
  EVP_PKEY_free(key);
  ERR_clear_error();
  if (mw_diag_count(errs) != errs0) {
    mw_tls_set_unref(s);
    return NULL;
  }
  return s;
}

/* ------------------------------------------------------------------------ */
/* The source                                                                */

/* What stat says of one file: a replacement (rename, a link swapped, a
 * rewrite) changes at least one of these. */
typedef struct stamp {
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
  int err; /* stat's errno, 0 when it succeeded */
} stamp;

enum { F_CERT, F_KEY, F_CA, N_FILES };

struct mw_tls_source {
  pthread_mutex_t lock;     /* everything below */
  char *path[N_FILES];      /* owned copies; path[F_CA] may be NULL */
  double interval;          /* seconds between looks at the files */
  double next_look;         /* mw_now() of the next look */
  stamp loaded[N_FILES];    /* the files as they were when current was read */
  stamp seen[N_FILES];      /* the files at the last look */
  mw_tls_set *current;      /* one reference, never NULL */
  unsigned gen;             /* bumped with each new current set, from 1 */
};

static void take_stamps(char *const *path, stamp *out) {
  for (int i = 0; i < N_FILES; i++) {
    memset(&out[i], 0, sizeof out[i]);
    if (!path[i]) continue;
    struct stat st;
    /* stat, not lstat: a swapped symbolic link shows as a new inode. */
    if (stat(path[i], &st) != 0) {
      out[i].err = errno ? errno : EIO;
      continue;
    }
    out[i].dev = st.st_dev;
    out[i].ino = st.st_ino;
    out[i].size = st.st_size;
    out[i].mtime = st.st_mtim;
  }
}

static int stamps_equal(const stamp *a, const stamp *b) {
  for (int i = 0; i < N_FILES; i++) {
    if (a[i].dev != b[i].dev || a[i].ino != b[i].ino || a[i].size != b[i].size ||
        a[i].mtime.tv_sec != b[i].mtime.tv_sec ||
        a[i].mtime.tv_nsec != b[i].mtime.tv_nsec || a[i].err != b[i].err)
      return 0;
  }
  return 1;
}

static mw_tls_files files_of(const mw_tls_source *s) {
  return (mw_tls_files){s->path[F_CERT], s->path[F_KEY], s->path[F_CA]};
}

static void log_each(mw_log_level level, const char *prefix, const mw_diag *d) {
  for (size_t i = 0; i < d->n && i < d->cap; i++)
    mw_log(level, "%s%s", prefix, d->msgs[i] ? d->msgs[i] : "(message lost)");
  if (d->dropped) mw_log(level, "%s(%zu more problems)", prefix, d->dropped);
}

mw_tls_source *mw_tls_source_new(const mw_tls_files *f, double interval,
                                 mw_diag *errs) {
  mw_tls_source *s = calloc(1, sizeof *s);
  if (!s) {
    mw_diag_add(errs, "%s: out of memory", f->cert);
    return NULL;
  }
  pthread_mutex_init(&s->lock, NULL);
  const char *p[N_FILES] = {f->cert, f->key, f->client_ca};
  for (int i = 0; i < N_FILES; i++) {
    if (p[i] && !(s->path[i] = strdup(p[i]))) {
      mw_diag_add(errs, "%s: out of memory", f->cert);
      mw_tls_source_free(s);
      return NULL;
    }
  }
  /* The stamps before the read: content at least as new as the stamps, so
   * a replacement racing the read is seen at the next look. */
  take_stamps(s->path, s->loaded);
  memcpy(s->seen, s->loaded, sizeof s->seen);
  mw_diag warns = {0};
  mw_tls_files files = files_of(s);
  s->current = mw_tls_load(&files, 0, errs, &warns);
  log_each(MW_LOG_WARN, "tls: ", &warns);
  mw_diag_free(&warns);
  if (!s->current) {
    mw_tls_source_free(s);
    return NULL;
  }
  mw_log(MW_LOG_INFO, "tls: certificate %s: %s, expires %s", s->path[F_CERT],
         s->current->subject, s->current->not_after);
  s->gen = 1;
  s->interval = interval;
  s->next_look = mw_now() + interval;
  return s;
}

/* A look at the files, with the lock held. */
static void look(mw_tls_source *s) {
  stamp now[N_FILES];
  take_stamps(s->path, now);
  if (stamps_equal(now, s->seen)) return; /* nothing new since the last look */
  memcpy(s->seen, now, sizeof s->seen);
  if (stamps_equal(now, s->loaded)) return; /* back to the files in use */
  mw_diag errs = {0}, warns = {0};
  mw_tls_files files = files_of(s);
  mw_tls_set *next = mw_tls_load(&files, 0, &errs, &warns);
  if (next) {
    mw_tls_set_unref(s->current);
    s->current = next;
    memcpy(s->loaded, now, sizeof s->loaded);
    s->gen++;
    mw_log(MW_LOG_INFO, "tls: certificate reloaded from %s: %s, expires %s",
           s->path[F_CERT], next->subject, next->not_after);
    log_each(MW_LOG_WARN, "tls: ", &warns);
  } else {
    /* Once per change: the next look finds the same stamps and stops. */
    char prefix[512];
    snprintf(prefix, sizeof prefix,
             "tls: the replaced files cannot be used; still serving %s "
             "(expires %s): ",
             s->current->subject, s->current->not_after);
    log_each(MW_LOG_WARN, prefix, &errs);
  }
  mw_diag_free(&errs);
  mw_diag_free(&warns);
}

mw_tls_set *mw_tls_source_fetch(mw_tls_source *s, unsigned *seen) {
  pthread_mutex_lock(&s->lock);
  double t = mw_now();
  if (t >= s->next_look) {
    s->next_look = t + s->interval;
    look(s);
  }
  mw_tls_set *r = NULL;
  if (*seen != s->gen) {
    *seen = s->gen;
    r = s->current;
    mw_tls_set_ref(r);
  }
  pthread_mutex_unlock(&s->lock);
  return r;
}

void mw_tls_source_free(mw_tls_source *s) {
  if (!s) return;
  pthread_mutex_destroy(&s->lock);
  mw_tls_set_unref(s->current);
  for (int i = 0; i < N_FILES; i++) free(s->path[i]);
  free(s);
}
