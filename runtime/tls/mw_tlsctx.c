/* A TLS server context with ALPN (tls/mw_tlsctx.h). */
#include "tls/mw_tlsctx.h"

#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <stdlib.h>

#include <openssl/x509v3.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/mw_tls.h"

/* h2 when offered (in the client's list, any position), else http/1.1
 * when offered, else no agreement (the handshake goes on: HTTP/1.1). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  static const char *const ours[] = {"h2", "http/1.1"};
  for (size_t k = 0; k < 2; k++) {
    size_t ol = strlen(ours[k]);
    for (unsigned int i = 0; i < inlen;) {
      unsigned int n = in[i];
      if (i + 1 + n > inlen) break;
      if (n == ol && memcmp(in + i + 1, ours[k], ol) == 0) {
        *out = in + i + 1;
        *outlen = (unsigned char)n;
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + n;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

struct ssl_ctx_st *mw_tlsctx_server(const char *cert_file, const char *key_file, char *err,
                                    size_t errlen) {
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    char e[256] = "out of memory";
    unsigned long code = ERR_get_error();
    if (code) ERR_error_string_n(code, e, sizeof e);
    snprintf(err, errlen, "cannot use %s and %s: %s", cert_file, key_file, e);
    SSL_CTX_free(ctx);
    return NULL;
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
  return ctx;
}

static void ossl_error(char *err, size_t errlen, const char *what) {
  char e[256] = "out of memory";
  unsigned long code = ERR_get_error();
  if (code) ERR_error_string_n(code, e, sizeof e);
  snprintf(err, errlen, "%s: %s", what, e);
}

struct ssl_ctx_st *mw_tlsctx_server_set(const mw_tls_set *set, int require_client_cert,
                                        char *err, size_t errlen) {
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  BIO *b = NULL;
  X509 *x = NULL;
  EVP_PKEY *pk = NULL;
  if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) goto fail;
  /* the leaf, then its chain */
  if (!(b = BIO_new_mem_buf(set->cert, -1)) || !(x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL)) ||
      SSL_CTX_use_certificate(ctx, x) != 1)
    goto fail;
  X509_free(x);
  while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
    if (SSL_CTX_add0_chain_cert(ctx, x) != 1) goto fail;
    x = NULL; /* the context's now */
  }
  ERR_clear_error(); /* the end of the chain */
  BIO_free(b);
  if (!(b = BIO_new_mem_buf(set->key, -1)) || !(pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)) ||
      SSL_CTX_use_PrivateKey(ctx, pk) != 1 || SSL_CTX_check_private_key(ctx) != 1)
    goto fail;
  EVP_PKEY_free(pk);
  pk = NULL;
  BIO_free(b);
  b = NULL;
  if (set->client_ca) {
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    if (!(b = BIO_new_mem_buf(set->client_ca, -1)) || !names) {
      sk_X509_NAME_free(names);
      goto fail;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
      X509_NAME *n = X509_NAME_dup(X509_get_subject_name(x));
      if (X509_STORE_add_cert(store, x) != 1 || !n || !sk_X509_NAME_push(names, n)) {
        X509_NAME_free(n);
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        goto fail;
      }
      X509_free(x);
      x = NULL;
    }
    ERR_clear_error();
    /* the CAs a client is told its certificate should chain to */
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                                                   : 0),
                       NULL);
    BIO_free(b);
    b = NULL;
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
  /* Sessions resumed across a rotation would skip the new checks: one
   * context's cache is its own, and a ticket key dies with it. */
  static const unsigned char sid[] = "moonwire-http";
  SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
  return ctx;
fail:
  ossl_error(err, errlen, "cannot use the certificate");
  X509_free(x);
  EVP_PKEY_free(pk);
  BIO_free(b);
  SSL_CTX_free(ctx);
  return NULL;
}

char *mw_tlsctx_peer_cert(struct ssl_st *ssl) {
  X509 *x = SSL_get1_peer_certificate(ssl);
  if (!x) return NULL;
  unsigned char *der = NULL;
  int n = i2d_X509(x, &der);
  X509_free(x);
  if (n <= 0) return NULL;
  char *out = malloc(((size_t)n + 2) / 3 * 4 + 1);
  if (out) EVP_EncodeBlock((unsigned char *)out, der, n);
  OPENSSL_free(der);
  return out;
}

void mw_tlsctx_cert_each(const char *b64, size_t len,
                         void (*fn)(void *ud, const char *name, const char *value, size_t len),
                         void *ud) {
  unsigned char *der = malloc(len / 4 * 3 + 3);
  if (!der) return;
  int n = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)len);
  /* DecodeBlock counts the padding as bytes; DER parsing ignores them */
  const unsigned char *p = der;
  X509 *x = n > 0 ? d2i_X509(NULL, &p, n) : NULL;
  free(der);
  if (!x) return;
  X509_NAME *subj = X509_get_subject_name(x);
  char cn[256];
  int cl = X509_NAME_get_text_by_NID(subj, NID_commonName, cn, sizeof cn);
  if (cl > 0) fn(ud, "x509_common_name", cn, (size_t)cl);
  BIO *b = BIO_new(BIO_s_mem());
  char *t;
  long tl;
  if (b && X509_NAME_print_ex(b, subj, 0, XN_FLAG_RFC2253) >= 0 &&
      (tl = BIO_get_mem_data(b, &t)) > 0)
    fn(ud, "x509_subject", t, (size_t)tl);
  BIO_free(b);
  GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int uris = 0;
  const char *uri = NULL;
  size_t uri_len = 0;
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
    const char *kind = NULL, *v = NULL;
    size_t vl = 0;
    char ip[INET6_ADDRSTRLEN];
    if (g->type == GEN_DNS || g->type == GEN_URI || g->type == GEN_EMAIL) {
      v = (const char *)ASN1_STRING_get0_data(g->d.ia5);
      vl = (size_t)ASN1_STRING_length(g->d.ia5);
      kind = g->type == GEN_DNS ? "peer_dns" : g->type == GEN_URI ? "peer_uri" : "peer_email";
      if (g->type == GEN_URI) {
        uris++;
        uri = v;
        uri_len = vl;
      }
    } else if (g->type == GEN_IPADD) {
      int il = ASN1_STRING_length(g->d.ip);
      const unsigned char *a = ASN1_STRING_get0_data(g->d.ip);
      if ((il == 4 && inet_ntop(AF_INET, a, ip, sizeof ip)) ||
          (il == 16 && inet_ntop(AF_INET6, a, ip, sizeof ip))) {
        v = ip;
        vl = strlen(ip);
        kind = "peer_ip";
      }
    }
    if (!kind) continue;
    fn(ud, "x509_subject_alternative_name", v, vl);
    fn(ud, kind, v, vl);
  }
  if (uris == 1 && uri_len > 9 && memcmp(uri, "spiffe://", 9) == 0)
    fn(ud, "peer_spiffe_id", uri, uri_len);
  GENERAL_NAMES_free(sans);
  b = BIO_new(BIO_s_mem());
  if (b && PEM_write_bio_X509(b, x) == 1 && (tl = BIO_get_mem_data(b, &t)) > 0)
    fn(ud, "x509_pem_cert", t, (size_t)tl);
  BIO_free(b);
  X509_free(x);
}

void mw_tlsctx_free(struct ssl_ctx_st *ctx) { SSL_CTX_free(ctx); }
