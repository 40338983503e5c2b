/* Unit tests for tls/mw_tls: each check of mw_tls_load with the message it
 * gives, and the source's reloads (rename, a swapped symbolic link, a
 * broken replacement logged once, the interval between looks). The
 * certificates are made here with OpenSSL, each for the case at hand. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/mw_log.h"
#include "mw_test.h"
#include "tls/mw_tls.h"
#include "tls/mw_tlsctx.h"
#include <openssl/ssl.h>

#define DIR MW_TEST_TMP "/tls"
#define LOG MW_TEST_TMP "/tls.log"

static long g_serial = 1;

/* ---- making certificates -------------------------------------------------- */

typedef struct cert {
  X509 *x;
  EVP_PKEY *key;
} cert;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value) {
  X509V3_CTX v;
  X509V3_set_ctx_nodb(&v);
  X509V3_set_ctx(&v, issuer, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
  if (!e || !X509_add_ext(x, e, -1)) {
    fprintf(stderr, "cannot add extension %d=%s\n", nid, value);
    exit(2);
  }
  X509_EXTENSION_free(e);
}

/* A certificate for cn valid from `from` to `to` seconds around now, signed
 * by issuer (NULL: self-signed); ca makes it a CA. */
static cert make_cert(const char *cn, const cert *issuer, long from, long to, int ca) {
  cert c = {X509_new(), EVP_EC_gen("P-256")};
  if (!c.x || !c.key) exit(2);
  X509_set_version(c.x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c.x), g_serial++);
  X509_gmtime_adj(X509_getm_notBefore(c.x), from);
  X509_gmtime_adj(X509_getm_notAfter(c.x), to);
  X509_set_pubkey(c.x, c.key);
  X509_NAME *name = X509_get_subject_name(c.x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509 *iss = issuer ? issuer->x : c.x;
  X509_set_issuer_name(c.x, X509_get_subject_name(iss));
  if (ca) {
    add_ext(c.x, iss, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(c.x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(c.x, iss, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(c.x, iss, NID_ext_key_usage, "serverAuth");
    add_ext(c.x, iss, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
  }
  if (!X509_sign(c.x, issuer ? issuer->key : c.key, EVP_sha256())) exit(2);
  return c;
}

static void cert_free(cert *c) {
  X509_free(c->x);
  EVP_PKEY_free(c->key);
}

#define DAY 86400L

static const char *path(char *buf, const char *name) {
  snprintf(buf, PATH_MAX, "%s/%s", DIR, name);
  return buf;
}

/* Every fixture is written to a temporary file renamed over name, as
 * rotation tools do: the file's contents, then the rename. */
typedef struct pending_file {
  char path[PATH_MAX], tmp[PATH_MAX + 8];
  FILE *f;
} pending_file;

static FILE *begin_file(pending_file *pf, const char *name) {
  path(pf->path, name);
  snprintf(pf->tmp, sizeof pf->tmp, "%s.tmp", pf->path);
  if (!(pf->f = fopen(pf->tmp, "w"))) exit(2);
  return pf->f;
}

static void end_file(pending_file *pf) {
  fclose(pf->f);
  rename(pf->tmp, pf->path);
}

/* One certificate, or two (a leaf and its issuer) when b is given. */
static void write_certs(const char *name, const cert *a, const cert *b) {
  pending_file pf;
  PEM_write_X509(begin_file(&pf, name), a->x);
  if (b) PEM_write_X509(pf.f, b->x);
  end_file(&pf);
}

static void write_key(const char *name, const cert *c) {
  pending_file pf;
  PEM_write_PrivateKey(begin_file(&pf, name), c->key, NULL, NULL, 0, NULL, NULL);
  end_file(&pf);
}

static void write_text(const char *name, const char *text) {
  pending_file pf;
  fputs(text, begin_file(&pf, name));
  end_file(&pf);
}

/* ---- checking ------------------------------------------------------------------ */

static mw_diag g_errs, g_warns;

/* Loads the files in DIR (ca may be NULL) at time now (0: the current). */
static mw_tls_set *load_at(const char *c, const char *k, const char *ca, time_t now) {
  char pc[PATH_MAX], pk[PATH_MAX], pca[PATH_MAX];
  mw_diag_free(&g_errs);
  mw_diag_free(&g_warns);
  mw_tls_files f = {path(pc, c), path(pk, k), ca ? path(pca, ca) : NULL};
  return mw_tls_load(&f, now, &g_errs, &g_warns);
}

static const char *err(size_t i) { return i < g_errs.n ? g_errs.msgs[i] : "(no such error)"; }
static const char *warn(size_t i) { return i < g_warns.n ? g_warns.msgs[i] : "(no such warning)"; }

/* The one error, which must start with DIR/file. */
static void expect_error(mw_tls_set *s, const char *file, const char *text) {
  char want[PATH_MAX + 2];
  snprintf(want, sizeof want, "%s/%s: ", DIR, file);
  MW_CHECK(s == NULL);
  MW_CHECK_INT(mw_diag_count(&g_errs), 1);
  MW_CHECK(strncmp(err(0), want, strlen(want)) == 0);
  MW_CHECK_CONTAINS(err(0), text);
  mw_tls_set_unref(s);
}

static cert g_ca, g_server, g_other_ca;

static void test_good_set(void) {
  write_certs("server.pem", &g_server, NULL);
  write_key("server.key", &g_server);
  mw_tls_set *s = load_at("server.pem", "server.key", NULL, 0);
  MW_CHECK(s != NULL);
  MW_CHECK_INT(mw_diag_count(&g_errs), 0);
  MW_CHECK_INT(mw_diag_count(&g_warns), 0);
  if (s) {
    MW_CHECK_STR(s->subject, "CN=server");
    MW_CHECK(strstr(s->cert, "-----BEGIN CERTIFICATE-----") != NULL);
    MW_CHECK(strstr(s->key, "PRIVATE KEY-----") != NULL);
    MW_CHECK(s->client_ca == NULL);
    MW_CHECK_INT(strlen(s->not_after), strlen("2030-01-31 23:59:59 UTC"));
    long left = (long)(s->expires - time(NULL));
    MW_CHECK(left > 29 * DAY && left <= 30 * DAY);
  }
  mw_tls_set_unref(s);
  mw_tls_set_unref(NULL);
}

static void test_files_that_are_not_there(void) {
  mw_tls_set *s = load_at("none.pem", "none.key", "none-ca.pem", 0);
  MW_CHECK(s == NULL);
  MW_CHECK_INT(mw_diag_count(&g_errs), 3);
  MW_CHECK_STR(err(0), DIR "/none.pem: cannot read the certificate file: No such file or directory");
  MW_CHECK_STR(err(1), DIR "/none.key: cannot read the key file: No such file or directory");
  MW_CHECK_STR(err(2), DIR "/none-ca.pem: cannot read the client CA file: No such file or directory");
  s = load_at(".", "server.key", NULL, 0);
  expect_error(s, ".", "is a directory, not the certificate file");
}

static void test_files_that_are_not_pem(void) {
  write_text("garbage.txt", "hello, not a certificate\n");
  expect_error(load_at("garbage.txt", "server.key", NULL, 0), "garbage.txt",
               "no certificate in the certificate file (expected PEM: -----BEGIN CERTIFICATE-----)");
  expect_error(load_at("server.key", "server.key", NULL, 0), "server.key",
               "no certificate in the certificate file");
  write_text("broken.pem", "-----BEGIN CERTIFICATE-----\nMIIBnotbase64!!\n-----END CERTIFICATE-----\n");
  expect_error(load_at("broken.pem", "server.key", NULL, 0), "broken.pem",
               "certificate 1 of the certificate file does not parse: ");
  expect_error(load_at("server.pem", "garbage.txt", NULL, 0), "garbage.txt",
               "no private key in the key file (expected PEM: -----BEGIN PRIVATE KEY-----)");
  write_text("broken.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  expect_error(load_at("server.pem", "broken.key", NULL, 0), "broken.key",
               "the private key does not parse: ");
  /* a key with a passphrase cannot be loaded unattended */
  char p[PATH_MAX];
  FILE *f = fopen(path(p, "encrypted.key"), "w");
  PEM_write_PrivateKey(f, g_server.key, EVP_aes_128_cbc(), (unsigned char *)"secret", 6, NULL, NULL);
  fclose(f);
  expect_error(load_at("server.pem", "encrypted.key", NULL, 0), "encrypted.key",
               "the private key is encrypted");
}

static void test_key_of_another_certificate(void) {
  write_key("ca.key", &g_ca);
  expect_error(load_at("server.pem", "ca.key", NULL, 0), "ca.key",
               "the private key does not match the certificate in " DIR "/server.pem (CN=server)");
}

static void test_dates(void) {
  cert expired = make_cert("old", &g_ca, -60 * DAY, -30 * DAY, 0);
  write_certs("expired.pem", &expired, NULL);
  write_key("expired.key", &expired);
  expect_error(load_at("expired.pem", "expired.key", NULL, 0), "expired.pem",
               "the certificate (CN=old) has expired: not after ");
  cert early = make_cert("early", &g_ca, 2 * DAY, 30 * DAY, 0);
  write_certs("early.pem", &early, NULL);
  write_key("early.key", &early);
  expect_error(load_at("early.pem", "early.key", NULL, 0), "early.pem",
               "the certificate (CN=early) is not valid yet: not before ");
  /* the server's certificate (30 days) seen 25.5 days on: a warning */
  mw_tls_set *s = load_at("server.pem", "server.key", NULL, time(NULL) + 25 * DAY + DAY / 2);
  MW_CHECK(s != NULL);
  MW_CHECK_INT(mw_diag_count(&g_warns), 1);
  MW_CHECK_CONTAINS(warn(0), DIR "/server.pem: the certificate (CN=server) expires in 4 days, on ");
  mw_tls_set_unref(s);
  /* an expired certificate further down the chain is named by its place */
  cert old_ca = make_cert("Old CA", NULL, -60 * DAY, -1 * DAY, 1);
  cert leaf = make_cert("leaf", &old_ca, -DAY, 30 * DAY, 0);
  write_certs("chain-old.pem", &leaf, &old_ca);
  write_key("chain-old.key", &leaf);
  expect_error(load_at("chain-old.pem", "chain-old.key", NULL, 0), "chain-old.pem",
               "certificate 2 of the chain (CN=Old CA) has expired");
  cert_free(&old_ca);
  cert_free(&leaf);
  cert_free(&expired);
  cert_free(&early);
}

static void test_client_ca(void) {
  write_certs("ca.pem", &g_ca, NULL);
  mw_tls_set *s = load_at("server.pem", "server.key", "ca.pem", 0);
  MW_CHECK(s != NULL);
  MW_CHECK(s && s->client_ca && strstr(s->client_ca, "BEGIN CERTIFICATE"));
  mw_tls_set_unref(s);
  /* a CA file with no certificate */
  expect_error(load_at("server.pem", "server.key", "server.key", 0), "server.key",
               "no certificate in the client CA file");
  /* the server's chain must verify against the client CAs (and the
   * system's store, which does not know this test's CA) */
  write_certs("other-ca.pem", &g_other_ca, NULL);
  expect_error(load_at("server.pem", "server.key", "other-ca.pem", 0), "server.pem",
               "the certificate does not verify against " DIR "/other-ca.pem plus the "
               "system's trust store: unable to get local issuer certificate (depth 0, "
               "CN=server)");
  /* both CAs in one file: fine */
  write_certs("both-ca.pem", &g_other_ca, &g_ca);
  s = load_at("server.pem", "server.key", "both-ca.pem", 0);
  MW_CHECK(s != NULL);
  mw_tls_set_unref(s);
}

static void test_intermediate(void) {
  cert inter = make_cert("Intermediate", &g_ca, -DAY, 60 * DAY, 1);
  cert leaf = make_cert("leaf", &inter, -DAY, 30 * DAY, 0);
  write_certs("leaf-chain.pem", &leaf, &inter);
  write_certs("leaf-only.pem", &leaf, NULL);
  write_key("leaf.key", &leaf);
  mw_tls_set *s = load_at("leaf-chain.pem", "leaf.key", "ca.pem", 0);
  MW_CHECK(s != NULL);
  MW_CHECK(s && strcmp(s->subject, "CN=leaf") == 0);
  mw_tls_set_unref(s);
  /* without its intermediate the chain does not reach the CA */
  expect_error(load_at("leaf-only.pem", "leaf.key", "ca.pem", 0), "leaf-only.pem",
               "unable to get local issuer certificate");
  cert_free(&inter);
  cert_free(&leaf);
}

/* ---- the source ---------------------------------------------------------------- */

static char *read_log(void) {
  static char buf[1 << 16];
  FILE *f = fopen(LOG, "rb");
  if (!f) return strcpy(buf, "");
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

static mw_tls_source *source(const char *c, const char *k, double interval) {
  char pc[PATH_MAX], pk[PATH_MAX];
  mw_tls_files f = {path(pc, c), path(pk, k), NULL};
  mw_diag_free(&g_errs);
  return mw_tls_source_new(&f, interval, &g_errs);
}

/* The subject of what a fetch returns, or "-" for nothing new. */
static char g_subject[128];
static const char *fetch(mw_tls_source *src, unsigned *seen) {
  mw_tls_set *s = mw_tls_source_fetch(src, seen);
  snprintf(g_subject, sizeof g_subject, "%s", s ? s->subject : "-");
  mw_tls_set_unref(s);
  return g_subject;
}

static void test_source_reloads(void) {
  cert next = make_cert("next", &g_other_ca, -DAY, 30 * DAY, 0);
  write_certs("live.pem", &g_server, NULL);
  write_key("live.key", &g_server);
  mw_tls_source *src = source("live.pem", "live.key", 0);
  MW_CHECK(src != NULL);
  if (!src) return;
  unsigned a = 0, b = 0;
  MW_CHECK_STR(fetch(src, &a), "CN=server");
  MW_CHECK_STR(fetch(src, &a), "-"); /* nothing changed */
  /* replaced by rename: the next fetch of every reader sees it, once */
  write_certs("live.pem", &next, NULL);
  write_key("live.key", &next);
  MW_CHECK_STR(fetch(src, &a), "CN=next");
  MW_CHECK_STR(fetch(src, &a), "-");
  MW_CHECK_STR(fetch(src, &b), "CN=next");
  MW_CHECK_INT(count(read_log(), "tls: certificate reloaded from " DIR "/live.pem: CN=next"), 1);
  /* half a rotation: the certificate replaced, its key not yet; reported,
   * then picked up once the key follows */
  write_certs("live.pem", &g_server, NULL);
  MW_CHECK_STR(fetch(src, &a), "-");
  MW_CHECK_INT(count(read_log(), "warn tls: the replaced files cannot be used; still serving "
                                 "CN=next"), 1);
  MW_CHECK_INT(count(read_log(), "does not match the certificate in " DIR "/live.pem"), 1);
  write_key("live.key", &g_server);
  MW_CHECK_STR(fetch(src, &a), "CN=server");
  /* a broken key: the set in use stays, and the problem is logged once */
  write_text("live.key", "garbage\n");
  MW_CHECK_STR(fetch(src, &a), "-");
  MW_CHECK_STR(fetch(src, &a), "-");
  MW_CHECK_STR(fetch(src, &b), "CN=server"); /* b had not seen CN=server yet */
  MW_CHECK_STR(fetch(src, &b), "-");
  const char *problem = "warn tls: the replaced files cannot be used; still serving CN=server";
  MW_CHECK_INT(count(read_log(), problem), 1);
  MW_CHECK_INT(count(read_log(), DIR "/live.key: no private key in the key file"), 1);
  unsigned fresh = 0;
  MW_CHECK_STR(fetch(src, &fresh), "CN=server"); /* a new reader: the set kept */
  /* mended (a new file, so loaded again, the same certificate) */
  write_key("live.key", &g_server);
  MW_CHECK_STR(fetch(src, &a), "CN=server");
  write_certs("live.pem", &next, NULL);
  write_key("live.key", &next);
  MW_CHECK_STR(fetch(src, &a), "CN=next");
  MW_CHECK_INT(count(read_log(), problem), 1);
  mw_tls_source_free(src);
  mw_tls_source_free(NULL);
  cert_free(&next);
}

/* Kubernetes mounts a secret as links through "..data", a link to a
 * directory it replaces by renaming a new link over it. */
static void test_source_link_swap(void) {
  char p[PATH_MAX], q[PATH_MAX];
  mkdir(path(p, "k8s"), 0755);
  mkdir(path(p, "k8s/v1"), 0755);
  mkdir(path(p, "k8s/v2"), 0755);
  write_certs("k8s/v1/tls.crt", &g_server, NULL);
  write_key("k8s/v1/tls.key", &g_server);
  cert next = make_cert("swapped", &g_ca, -DAY, 30 * DAY, 0);
  write_certs("k8s/v2/tls.crt", &next, NULL);
  write_key("k8s/v2/tls.key", &next);
  unlink(path(p, "k8s/..data"));
  unlink(path(p, "k8s/tls.crt"));
  unlink(path(p, "k8s/tls.key"));
  MW_CHECK_INT(symlink("v1", path(p, "k8s/..data")), 0);
  MW_CHECK_INT(symlink("..data/tls.crt", path(p, "k8s/tls.crt")), 0);
  MW_CHECK_INT(symlink("..data/tls.key", path(p, "k8s/tls.key")), 0);
  mw_tls_source *src = source("k8s/tls.crt", "k8s/tls.key", 0);
  MW_CHECK(src != NULL);
  if (!src) return;
  unsigned seen = 0;
  MW_CHECK_STR(fetch(src, &seen), "CN=server");
  unlink(path(p, "k8s/..data_tmp"));
  MW_CHECK_INT(symlink("v2", path(p, "k8s/..data_tmp")), 0);
  MW_CHECK_INT(rename(path(p, "k8s/..data_tmp"), path(q, "k8s/..data")), 0);
  MW_CHECK_STR(fetch(src, &seen), "CN=swapped");
  mw_tls_source_free(src);
  cert_free(&next);
}

static void test_source_interval(void) {
  write_certs("slow.pem", &g_server, NULL);
  write_key("slow.key", &g_server);
  mw_tls_source *src = source("slow.pem", "slow.key", 3600);
  MW_CHECK(src != NULL);
  if (!src) return;
  unsigned seen = 0;
  MW_CHECK_STR(fetch(src, &seen), "CN=server");
  cert next = make_cert("later", &g_ca, -DAY, 30 * DAY, 0);
  write_certs("slow.pem", &next, NULL);
  write_key("slow.key", &next);
  /* an hour between looks: the files are not even looked at yet */
  MW_CHECK_STR(fetch(src, &seen), "-");
  mw_tls_source_free(src);
  cert_free(&next);
}

static void test_source_first_load_fails(void) {
  mw_tls_source *src = source("garbage.txt", "server.key", 0);
  MW_CHECK(src == NULL);
  MW_CHECK_INT(mw_diag_count(&g_errs), 1);
  MW_CHECK_CONTAINS(err(0), DIR "/garbage.txt: no certificate in the certificate file");
}

/* ---- the HTTP listener's contexts (tls/mw_tlsctx.h) ------------------------ */

static void test_context_of_a_set(void) {
  write_certs("ctx.pem", &g_server, &g_ca);
  write_key("ctx.key", &g_server);
  write_certs("ctx-ca.pem", &g_ca, NULL);
  mw_tls_set *s = load_at("ctx.pem", "ctx.key", "ctx-ca.pem", 0);
  MW_CHECK(s != NULL);
  if (!s) return;
  char e[256] = "";
  SSL_CTX *c = mw_tlsctx_server_set(s, 1, e, sizeof e);
  MW_CHECK(c != NULL);
  if (c) {
    MW_CHECK_INT(SSL_CTX_get_verify_mode(c), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    MW_CHECK(X509_cmp(SSL_CTX_get0_certificate(c), g_server.x) == 0);
    STACK_OF(X509) *chain = NULL;
    MW_CHECK_INT(SSL_CTX_get0_chain_certs(c, &chain), 1);
    MW_CHECK_INT(chain ? sk_X509_num(chain) : -1, 1); /* the CA after the leaf */
    MW_CHECK_INT(sk_X509_NAME_num(SSL_CTX_get_client_CA_list(c)), 1);
    mw_tlsctx_free(c);
  }
  c = mw_tlsctx_server_set(s, 0, e, sizeof e); /* asked for, not required */
  MW_CHECK(c && SSL_CTX_get_verify_mode(c) == SSL_VERIFY_PEER);
  mw_tlsctx_free(c);
  mw_tls_set_unref(s);
  s = load_at("ctx.pem", "ctx.key", NULL, 0); /* no client_ca: none asked for */
  c = s ? mw_tlsctx_server_set(s, 0, e, sizeof e) : NULL;
  MW_CHECK(c && SSL_CTX_get_verify_mode(c) == SSL_VERIFY_NONE);
  mw_tlsctx_free(c);
  mw_tls_set_unref(s);
}

typedef struct props {
  char text[4096];
  int pem;
} props;

static void collect(void *ud, const char *name, const char *v, size_t len) {
  props *p = ud;
  if (strcmp(name, "x509_pem_cert") == 0) {
    p->pem = len > 27 && memcmp(v, "-----BEGIN CERTIFICATE-----", 27) == 0;
    return;
  }
  size_t n = strlen(p->text);
  snprintf(p->text + n, sizeof p->text - n, "%s=%.*s;", name, (int)len, v);
}

static void test_certificate_properties(void) {
  unsigned char *der = NULL;
  int n = i2d_X509(g_server.x, &der);
  char *b64 = malloc((size_t)n * 2 + 4);
  EVP_EncodeBlock((unsigned char *)b64, der, n);
  OPENSSL_free(der);
  props p = {{0}, 0};
  mw_tlsctx_cert_each(b64, strlen(b64), collect, &p);
  /* gRPC core's names, in the certificate's order */
  MW_CHECK_STR(p.text, "x509_common_name=server;x509_subject=CN=server;"
                       "x509_subject_alternative_name=localhost;peer_dns=localhost;"
                       "x509_subject_alternative_name=127.0.0.1;peer_ip=127.0.0.1;");
  MW_CHECK_INT(p.pem, 1);
  free(b64);
  props q = {{0}, 0};
  mw_tlsctx_cert_each("bm90IGEgY2VydA==", 16, collect, &q); /* "not a cert" */
  MW_CHECK_STR(q.text, "");
  MW_CHECK_INT(q.pem, 0);
}

int main(void) {
  mkdir(MW_TEST_TMP, 0777);
  mkdir(DIR, 0777);
  int fd = open(LOG, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 1;
  mw_log_configure(MW_LOG_INFO, 0, fd);
  g_ca = make_cert("Test CA", NULL, -DAY, 365 * DAY, 1);
  g_other_ca = make_cert("Other CA", NULL, -DAY, 365 * DAY, 1);
  g_server = make_cert("server", &g_ca, -DAY, 30 * DAY, 0);
  MW_RUN(test_good_set);
  MW_RUN(test_files_that_are_not_there);
  MW_RUN(test_files_that_are_not_pem);
  MW_RUN(test_key_of_another_certificate);
  MW_RUN(test_dates);
  MW_RUN(test_client_ca);
  MW_RUN(test_intermediate);
  MW_RUN(test_source_reloads);
  MW_RUN(test_source_link_swap);
  MW_RUN(test_source_interval);
  MW_RUN(test_source_first_load_fails);
  MW_RUN(test_context_of_a_set);
  MW_RUN(test_certificate_properties);
  cert_free(&g_ca);
  cert_free(&g_other_ca);
  cert_free(&g_server);
  mw_diag_free(&g_errs);
  mw_diag_free(&g_warns);
  close(fd);
  return mw_test_done();
}
