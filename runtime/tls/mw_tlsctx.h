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
struct mw_tls_set;
/* The same from a checked set of files (tls/mw_tls.h) already read: its
 * chain and key and, with its client_ca, client certificates asked for
 * and verified against those CAs (require: refused without one; else a
 * client may send none). So the listener can make a new context whenever
 * the files change (rotation) while the connections of the previous one
 * go on with theirs. */
struct ssl_ctx_st *mw_tlsctx_server_set(const struct mw_tls_set *set, int require_client_cert,
                                        char *err, size_t errlen);
struct ssl_st; /* OpenSSL's SSL */
/* The verified client certificate of a connection, as base64 DER (no
 * newlines), malloc'd; NULL when the client sent none. */
char *mw_tlsctx_peer_cert(struct ssl_st *ssl);
/* A client certificate (base64 DER, as mw_tlsctx_peer_cert makes it)
 * property by property under gRPC core's names, as its auth context would
 * have them for the same certificate: "x509_common_name", "x509_subject"
 * (RFC 2253), "x509_subject_alternative_name", "peer_dns", "peer_uri",
 * "peer_email", "peer_ip", "peer_spiffe_id" (the one URI name, when it is
 * a SPIFFE ID) and "x509_pem_cert". Nothing when it does not decode. */
void mw_tlsctx_cert_each(const char *b64, size_t len,
                         void (*fn)(void *ud, const char *name, const char *value, size_t len),
                         void *ud);
/* Frees a context of mw_tlsctx_server; NULL ok. */
void mw_tlsctx_free(struct ssl_ctx_st *ctx);

#endif
