/* Listener credentials (mw_credentials.h). With TLS, every listener gets
 * credentials of its own with a fetcher record of its own: gRPC core makes
 * one security connector per listener, and each connector must hear of a
 * new certificate once. One record shared by two listeners would hand the
 * change to whichever handshook first and leave the other on the old
 * certificate. */
#include "core/mw_credentials.h"

#include <stdlib.h>

#include "base/mw_log.h"
#include "tls/mw_tls.h"

/* How often, at most, a handshake looks at the files (seconds): a stat of
 * three files, not per handshake under load. */
#define MW_TLS_LOOK_INTERVAL 1.0

/* What one listener's fetcher knows: the source and the generation of the
 * set its connector uses. gRPC core calls the fetcher under its connector's
 * lock, and mw_tls_source_fetch updates seen under the source's. */
typedef struct mw_fetcher {
  struct mw_fetcher *next; /* the credentials' list, for freeing */
  mw_tls_source *source;   /* borrowed from the credentials */
  unsigned seen;
} mw_fetcher;

struct mw_credentials {
  mw_tls_source *source; /* owned; NULL for plaintext */
  grpc_ssl_client_certificate_request_type request;
  mw_fetcher *fetchers;  /* owned list, one per listener */
};

/* Called by gRPC core when a listener is created (it must answer NEW then)
 * and before every handshake; core takes ownership of *config. */
static grpc_ssl_certificate_config_reload_status fetch(
    void *user_data, grpc_ssl_server_certificate_config **config) {
  mw_fetcher *f = user_data;
  mw_tls_set *set = mw_tls_source_fetch(f->source, &f->seen);
  if (!set) return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
  grpc_ssl_pem_key_cert_pair pair = {set->key, set->cert};
  /* Core 1.51 asserts that a fetched config has root certificates
   * (ssl_security_connector.cc, a debug assertion that Debian's build
   * keeps), even when no client certificate is asked for. Without
   * client_ca the server's own chain stands in: with
   * GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE the server verifies nothing
   * and sends no CA list, so those certificates are never used. */
  const char *roots = set->client_ca ? set->client_ca : set->cert;
  /* Core copies the strings: the set can go as soon as this returns. */
  *config = grpc_ssl_server_certificate_config_create(roots, &pair, 1);
  mw_tls_set_unref(set);
  return *config ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW
                 : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
}

mw_credentials *mw_credentials_new(const mw_config *cfg, mw_diag *diag) {
  mw_credentials *c = calloc(1, sizeof *c);
  if (!c) {
    mw_diag_add(diag, "out of memory");
    return NULL;
  }
  if (!cfg->tls.cert) return c;
  mw_tls_files files = {cfg->tls.cert, cfg->tls.key, cfg->tls.client_ca};
  c->source = mw_tls_source_new(&files, MW_TLS_LOOK_INTERVAL, diag);
  if (!c->source) {
    free(c);
    return NULL;
  }
  c->request = cfg->tls.require_client_cert
                   ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
               : cfg->tls.client_ca ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                                    : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  if (cfg->tls.client_ca)
    mw_log(MW_LOG_INFO, "tls: client certificates %s, verified against %s",
           cfg->tls.require_client_cert ? "required" : "optional",
           cfg->tls.client_ca);
  return c;
}

int mw_credentials_tls(const mw_credentials *c) { return c && c->source; }

grpc_server_credentials *mw_credentials_listener(mw_credentials *c) {
  if (!c->source) return grpc_insecure_server_credentials_create();
  mw_fetcher *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->source = c->source;
  f->next = c->fetchers;
  c->fetchers = f;
  /* gRPC core's defaults here are what Moonwire wants and are checked by
   * the end-to-end tests: TLS 1.2 and 1.3 only, and ALPN "h2" (a client
   * that does not offer it is refused after the handshake). */
  grpc_ssl_server_credentials_options *o =
      grpc_ssl_server_credentials_create_options_using_config_fetcher(
          c->request, fetch, f);
  return o ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
}

void mw_credentials_free(mw_credentials *c) {
  if (!c) return;
  while (c->fetchers) {
    mw_fetcher *f = c->fetchers;
    c->fetchers = f->next;
    free(f);
  }
  mw_tls_source_free(c->source);
  free(c);
}
