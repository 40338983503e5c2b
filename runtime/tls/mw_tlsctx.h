/* A TLS server context for a listener that does its own TLS (the HTTP
 * listener on h2o, http/mw_http.h), where gRPC core's credentials do not
 * reach: the certificate chain and key from PEM files, TLS 1.2 at least, no
 * compression or renegotiation, and ALPN choosing h2 when the client offers
 * it, else http/1.1. Callers check the files with mw_tls_load first, for
 * messages that name each problem. */
#ifndef MW_TLSCTX_H
#define MW_TLSCTX_H

#include <stddef.h>

struct ssl_ctx_st; /* OpenSSL's SSL_CTX, opaque here */

/* The context, or NULL with OpenSSL's reason in err. The caller owns it. */
struct ssl_ctx_st *mw_tlsctx_server(const char *cert_file, const char *key_file, char *err,
                                    size_t errlen);
/* Frees a context of mw_tlsctx_server; NULL ok. */
void mw_tlsctx_free(struct ssl_ctx_st *ctx);

#endif
