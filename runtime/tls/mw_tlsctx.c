/* A TLS server context with ALPN (tls/mw_tlsctx.h). */
#include "tls/mw_tlsctx.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

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

void mw_tlsctx_free(struct ssl_ctx_st *ctx) { SSL_CTX_free(ctx); }
