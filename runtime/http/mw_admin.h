/* The admin listener (config admin:): /metrics, /healthz, /readyz,
 * /debug/calls, /debug/config, served by its own thread (http/mw_http.h),
 * never by a gRPC worker. What it shows it gathers safely: metrics from
 * the registry (metrics/mw_metrics.h) and atomics, live calls by mail to
 * each worker (core/mw_debug.h), readiness from the health board's drain
 * state, the config from a copy rendered by the main thread.
 *
 * With console on and no HTTP listener, the browser console is here too
 * (http/mw_console.h): its pages under /console, and its calls to
 * /console/rpc/pkg.Service/Method answered by a Connect handler of the
 * admin's own (http/mw_web.h, mw_web_new) on the admin's thread. */
#ifndef MW_ADMIN_H
#define MW_ADMIN_H

#include <stddef.h>

#include "base/mw_diag.h"
#include "config/mw_config.h"
#include "core/mw_server.h"
#include "lua/mw_lalloc.h"

typedef struct mw_admin mw_admin;

/* Starts the listener on cfg->admin.listen. server and mem (n_mem worker
 * memory accounts) are borrowed and must outlive the admin (stop it before
 * freeing them). The config is rendered at once (mw_admin_set_config).
 * NULL with diag filled. */
mw_admin *mw_admin_start(const mw_config *cfg, mw_server *server, mw_lua_mem *mem, int n_mem,
                         mw_diag *diag);
const char *mw_admin_address(const mw_admin *a);
/* The effective config after a reload: rendered now (secrets redacted),
 * served by /debug/config from then on. Any thread. */
void mw_admin_set_config(mw_admin *a, const mw_config *cfg);
/* The config as /debug/config shows it (malloc'd JSON, the caller's). */
char *mw_admin_config_json(const mw_config *cfg, size_t *len);
/* Whether a setting named key holds a secret itself (a token, a password,
 * a shared or private key given inline), so that /debug/config shows it as
 * "<redacted>": names containing secret, token, password, passwd,
 * credential, private or hmac, or ending in _key. A path to a file (key,
 * key_file, *_path, *_file) is not a secret. Sections that carry such
 * settings render their strings through it. */
int mw_admin_is_secret(const char *key);
/* Stops the thread and frees a; NULL ok. */
void mw_admin_stop(mw_admin *a);

#endif
