/* The listeners' credentials: plaintext, or TLS whose certificate follows
 * its files without a restart. The files are a tls/ source; gRPC core asks
 * for the current set through its certificate config fetcher, which it
 * calls at every handshake (grpc_security.h). Internal to core/: it speaks
 * gRPC, and only mw_server.c uses it. */
#ifndef MW_CREDENTIALS_H
#define MW_CREDENTIALS_H

#include <grpc/grpc_security.h>

#include "base/mw_diag.h"
#include "config/mw_config.h"

typedef struct mw_credentials mw_credentials;

/* Plaintext when cfg->tls.cert is NULL; otherwise loads and checks the TLS
 * files (tls/mw_tls.h). Returns NULL with every problem in diag. */
mw_credentials *mw_credentials_new(const mw_config *cfg, mw_diag *diag);
/* Whether the listeners speak TLS. */
int mw_credentials_tls(const mw_credentials *c);
/* Credentials for one more listener: a reference for the caller, who
 * releases it once grpc_server_add_http2_port has taken its own. */
grpc_server_credentials *mw_credentials_listener(mw_credentials *c);
/* Frees c and the fetchers' records. gRPC core keeps pointers to those
 * records in its listeners, so this comes once no listener can start a
 * handshake any more: after grpc_server_destroy (mw_server_free does it
 * after grpc_shutdown). NULL is ignored. */
void mw_credentials_free(mw_credentials *c);

#endif
