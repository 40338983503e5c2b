/* Configuration: one YAML file (libyaml), every key optional and validated.
 * Errors name file:line:column. */
#ifndef MW_CONFIG_H
#define MW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "base/mw_diag.h"
#include "base/mw_strvec.h"

/* A YAML value kept as written, for interceptor options. Plain scalars are
 * typed: true/false booleans, integers, floats; everything else (quoted
 * scalars, durations such as "500ms") is a string. Empty values (null, ~)
 * are MW_CV_NIL. */
enum { MW_CV_NIL, MW_CV_BOOL, MW_CV_INT, MW_CV_FLOAT, MW_CV_STRING,
       MW_CV_MAP, MW_CV_LIST };
typedef struct mw_config_value {
  int type;     /* MW_CV_* */
  int boolean;  /* MW_CV_BOOL */
  int64_t i;    /* MW_CV_INT */
  double f;     /* MW_CV_FLOAT */
  char *s;      /* MW_CV_STRING: owned, NUL-terminated */
  size_t len;   /* its length */
  char **keys;  /* MW_CV_MAP: n owned keys */
  struct mw_config_value *items; /* MAP values or LIST items: n, owned */
  size_t n;
} mw_config_value;

/* One entry of an `interceptors:` list: a name, or a one-key mapping
 * name -> options. */
typedef struct mw_config_interceptor {
  char *name;           /* owned: the module moonwire.interceptors.<name> */
  mw_config_value opts; /* MW_CV_MAP (empty when none were given) */
  char *where;          /* owned: "file:line:column" of the entry, for the
                           problems found when it is instantiated */
} mw_config_interceptor;

typedef struct mw_config_interceptors {
  mw_config_interceptor *v; /* owned */
  size_t n;
} mw_config_interceptors;

/* Settings of one method or service (config `methods`). */
typedef struct mw_method_config {
  char *path;             /* "/pkg.Service/Method", or "pkg.Service" for a
                             whole service (owned) */
  int service;            /* path names a service */
  int64_t max_concurrent; /* calls of it in flight at once; 0 = no limit */
  int64_t max_receive_bytes; /* a method's own, below limits.max_receive_bytes;
                                0 = the server's */
  int64_t max_send_bytes;    /* likewise for limits.max_send_bytes */
  mw_config_interceptors interceptors; /* this level's, in order */
  int64_t deadline_default_ms; /* deadline.default; 0 = none */
  int64_t deadline_max_ms;     /* deadline.max; 0 = none */
  char *deadline_where;        /* owned: where deadline was written, or NULL */
  /* idempotency: the options as written (MW_CV_MAP, empty for `{}` or no
   * value), checked by the interceptor when it is made; MW_CV_NIL when the
   * key is absent. */
  mw_config_value idempotency;
  char *idempotency_where;     /* owned: where idempotency was written, or NULL */
} mw_method_config;

/* A retry policy of outbound calls (client.retry, or a method's). */
typedef struct mw_config_retry {
  int set;                    /* written in the file (a method's overrides) */
  int64_t max_attempts;       /* attempts in all, first included; default 1:
                                 no retries */
  int64_t initial_backoff_ms; /* default 100 */
  int64_t max_backoff_ms;     /* default 1000 */
  double multiplier;          /* default 2 */
  unsigned codes;             /* bit per retryable status; default UNAVAILABLE */
} mw_config_retry;

/* client.methods: one outbound method's settings. */
typedef struct mw_config_client_method {
  char *path;         /* "/pkg.Service/Method" or "pkg.Service" (owned) */
  int idempotent;     /* -1: as the proto says; 0 / 1 */
  int64_t timeout_ms; /* 0: the caller's */
  mw_config_retry retry;
} mw_config_client_method;

/* shared: one dict (shared/mw_shared.h). */
typedef struct mw_config_shared {
  char *name;   /* a Lua identifier (owned) */
  int64_t size; /* bytes, at least 64 KiB; -1 for a dict on Redis */
  char *redis;  /* redis://HOST:PORT/DB, NULL in memory (owned) */
  char *prefix; /* the keys' prefix in Redis, NULL: "NAME:" (owned) */
  int64_t timeout_ms; /* the wait for Redis's answer, 0: 1s */
} mw_config_shared;

/* sessions: one room (sessions/mw_sessions.h). */
enum { MW_CONFIG_SESS_BLOCK = 0, MW_CONFIG_SESS_DROP_OLDEST = 1, MW_CONFIG_SESS_CLOSE = 2 };
typedef struct mw_config_session {
  char *name;            /* a Lua identifier (owned) */
  char *message;         /* the publications' type, a full name (owned) */
  char *offset_field;    /* a field stamped with the offset, or NULL (owned) */
  int64_t history_size;  /* publications kept per topic; default 0 (none) */
  int64_t history_ttl_ms; /* their age limit; default 0 (none) */
  int64_t buffer;        /* queued per stream; default 64 */
  int policy;            /* MW_CONFIG_SESS_*; default block */
  char *redis;           /* redis://HOST:PORT/DB, NULL in memory (owned) */
  char *prefix;          /* the keys' prefix in Redis, NULL: "sessions:NAME:" (owned) */
  int64_t timeout_ms;    /* the wait for Redis's answer, 0: 1s */
} mw_config_session;

typedef struct mw_config {
  char *file;     /* the config file's path, NULL when none (owned) */
  mw_strvec listen;      /* "host:port"; default ["127.0.0.1:50051"] */
  int workers;           /* >= 1; "auto" (the default) = number of cores */
  mw_strvec services;    /* directories of .proto + .lua; paths are resolved
                            against the config file's directory */
  mw_strvec proto_path;  /* extra protoc include directories, resolved too */
  mw_strvec protos;      /* .proto names found through proto_path, served
                            like the service directories' own */
  struct {
    int64_t max_receive_bytes;   /* default 4 MiB */
    int64_t max_send_bytes;      /* default 4 MiB */
    int64_t send_queue_bytes;    /* default 1 MiB */
    int64_t send_queue_messages; /* default 64 */
    int64_t handler_cpu_ms;      /* default 10000; 0 = no budget */
    int64_t handler_slice_ms;    /* default 5; 0 = handlers never preempted */
    int64_t lua_memory_mb;       /* per worker; default 256; 0 = no cap */
    int64_t max_concurrent_streams; /* default 1000 */
    int64_t max_header_list_size;   /* bytes; default 16384 */
    int64_t max_inflight_calls;     /* server-wide; default 0 = no limit */
    int64_t max_rss_mb;             /* the memory guard; default 0 = off */
  } limits;
  struct {
    int64_t time_ms;                /* default 7200000 */
    int64_t timeout_ms;             /* default 20000 */
    int64_t min_client_ping_ms;     /* default 300000 */
    int64_t max_ping_strikes;       /* default 2 */
    int64_t max_connection_idle_ms; /* default 0 = unlimited */
    int64_t max_connection_age_ms;  /* default 0 = unlimited */
    int64_t max_connection_age_grace_ms; /* default 0 = unlimited */
  } keepalive;
  struct {
    int bdp_probe;                /* default 0: windows stay at stream_window */
    int64_t stream_window;        /* bytes; default 65536 */
    int64_t max_frame_size;       /* bytes; default 16384 */
    int64_t handshake_timeout_ms; /* default 10000 */
    int64_t memory_mb;            /* gRPC core's resource quota; default 1024;
                                     0 = none */
  } transport;
  struct {
    int watch;          /* default 1 */
    int64_t debounce_ms; /* default 200 */
  } reload;
  struct {
    int level;  /* mw_log_level; default info */
    int json;   /* format: text (0, default) or json (1) */
  } log;
  int64_t shutdown_grace_ms;       /* shutdown.grace (or the older top-level
                                      shutdown_grace_ms); default 10000 */
  int64_t shutdown_drain_delay_ms; /* shutdown.drain_delay; default 0 */
  mw_method_config *methods; /* per-method and per-service settings
                                (owned array) */
  mw_config_interceptors interceptors; /* top-level `interceptors:` */
  size_t n_methods;
  int health;     /* serve grpc.health.v1.Health; default 1 */
  int reflection; /* serve grpc.reflection v1 and v1alpha; default 1 */
  int console;    /* the browser console at /console of the HTTP listener, or
                     of the admin listener without one; default 1 */
  char *upstream; /* upstream: HOST:PORT that stub mode forwards calls to
                     when neither a handler nor a stub answers; NULL: none */
  /* TLS to the upstream (upstream.tls, or an https:// upstream): off while
   * tls is 0; without ca the system's roots verify it. Paths absolute,
   * resolved against the config file's directory (owned). */
  struct {
    int tls;
    char *ca, *cert, *key, *server_name;
  } upstream_tls;
  char *record;   /* serve --record DIR (absolute; no config key): where
                     calls forwarded upstream are written as stub files */
  int stub_all;   /* serve --stub-all: every method without a handler or stub
                     answers a default message (no config key); default 0 */
  /* TLS for every listener; off while cert is NULL. Paths are absolute
   * (owned), resolved against the config file's directory like services,
   * but symbolic links are kept: a rotation that swaps a link (Kubernetes'
   * ..data) must be seen through the path as written. */
  struct {
    char *cert;      /* PEM: the server's certificate, then its chain */
    char *key;       /* PEM: the private key of cert */
    char *client_ca; /* PEM: the CAs client certificates must chain to */
    int require_client_cert; /* default 0; needs client_ca */
  } tls;
  struct {
    int unsafe; /* default 0: handlers run in the sandbox (lua/mw_sandbox.h) */
  } lua;
  /* Responses compressed for clients that accept it (requests are read
   * compressed or not, whatever this says). Read when the server starts. */
  struct {
    int algorithm;     /* mw_config_compression; default NONE */
    int64_t min_bytes; /* smaller messages go uncompressed; default 1024 */
    struct mw_config_compress_method *methods; /* owned, n_methods long */
    size_t n_methods;
  } compression;
  /* tracing: spans of every call exported over OTLP/HTTP JSON (trace/). */
  struct {
    char *otlp;          /* owned: the collector's http:// URL; NULL: off */
    char *service_name;  /* owned: the resource's service.name; NULL: "moonwire" */
    double sample;       /* ratio of new traces sampled, 0..1; default 1 */
    int64_t batch;       /* spans per request at most; default 512 */
    int64_t flush_ms;    /* a partial batch waits this long at most; default 1000 */
    int64_t queue;       /* spans waiting at most, then dropped; default 4096 */
  } tracing;
  /* The admin HTTP listener (metrics, health, debug); off while listen is
   * NULL. */
  struct {
    char *listen;            /* "host:port" (owned); default NULL: off */
    int64_t max_connections; /* open at once; default 64 */
    int64_t timeout_ms;      /* a connection's idle/read timeout; default 10 s */
  } admin;
  /* The HTTP listener for browsers and HTTP clients (gRPC-Web, Connect;
   * http/mw_web.h); off while listen is NULL. Read when the server starts. */
  struct {
    char *listen;            /* "host:port" (owned); default NULL: off */
    int64_t max_connections; /* open at once; default 1024 */
    int64_t timeout_ms;      /* a connection's idle/read timeout; default 30 s */
    mw_strvec cors_origins;  /* origins answered with CORS headers; "*": any;
                                empty: no CORS headers at all */
    mw_strvec cors_headers;  /* request headers allowed beyond the protocols' own */
    mw_strvec cors_expose;   /* response headers a page may read beyond the status's */
    char *tls_cert;          /* owned path: serve HTTPS (ALPN h2, http/1.1); NULL: cleartext */
    char *tls_key;           /* owned path, with tls_cert */
    char *tls_client_ca;     /* owned path: ask clients for a certificate; NULL: none */
    int tls_require_client_cert; /* refuse clients without one; needs tls_client_ca */
    int64_t sse_keepalive_ms; /* a comment on an idle event stream this often; 0: none;
                                 default 15 s */
    int64_t sse_retry_ms;     /* the reconnect delay an event stream asks of its client
                                 (a retry: field); 0: none, the client's own */
  } http;
  struct {
    int64_t max_series; /* series per metric family at most; default 1000 */
  } metrics;
  /* Outbound calls (core/mw_client.h, lua/moonwire/client.lua). allow and
   * the limits are read when the server starts; the rest by every
   * generation. */
  struct {
    mw_strvec allow;             /* target patterns; empty: no outbound calls */
    mw_strvec propagate;         /* request metadata keys children inherit */
    int64_t deadline_margin_ms;  /* default 5 */
    int64_t max_receive_bytes;   /* default 4 MiB */
    int64_t max_metadata_bytes;  /* default 16 KiB */
    int64_t keepalive_ms;        /* default 0: no pings */
    int64_t connect_timeout_ms;  /* default 20 s */
    int64_t max_backoff_ms;      /* reconnect backoff at most; default 10 s */
    int64_t max_channels;        /* cached per worker; default 64 */
    mw_config_retry retry;       /* the default policy */
    int64_t budget_tokens;       /* retry budget per target; default 10 */
    double budget_ratio;         /* tokens a success gives back; default 0.1 */
    mw_config_client_method *methods; /* owned, n_methods long */
    size_t n_methods;
  } client;
  /* Shared dicts (mw.shared.NAME), in the order written. Made when the
   * server starts; a reload may add dicts, never drop or resize one. */
  struct {
    mw_config_shared *v; /* owned, n long */
    size_t n;
  } shared;
  /* Stream session rooms (mw.sessions.NAME), in the order written; made
   * like the shared dicts: once, a reload may add rooms only. */
  struct {
    mw_config_session *v; /* owned, n long */
    size_t n;
  } sessions;
  /* http.rules: REST bindings (google.api.http rules) for methods whose
   * .proto files carry none, compiled per generation by the transcoder
   * (codec/mw_transcode.h). Owned array, in file order. */
  struct mw_config_http_rule *http_rules;
  size_t n_http_rules;
} mw_config;

/* One rule of http.rules, or one of its additional_bindings (selector
 * NULL, no bindings of its own). Strings owned; read when a generation is
 * built. */
typedef struct mw_config_http_rule {
  char *selector;      /* "pkg.Service.Method" */
  char *method;        /* "GET", "PUT", "POST", "DELETE", "PATCH" or custom.kind */
  char *path;          /* the path template, as written */
  char *body;          /* NULL: no body; "*" or a top-level request field */
  char *response_body; /* NULL: the whole response; else a top-level field */
  struct mw_config_http_rule *additional; /* owned, n_additional long */
  size_t n_additional;
  size_t line, col; /* where the rule is in the file, for messages */
} mw_config_http_rule;

/* compression.algorithm (the values of grpc_compression_algorithm). */
enum { MW_CONFIG_COMPRESS_NONE = 0, MW_CONFIG_COMPRESS_DEFLATE = 1,
       MW_CONFIG_COMPRESS_GZIP = 2 };

/* compression.methods: one method's settings; a key it leaves out (-1)
 * takes the section's value. */
typedef struct mw_config_compress_method {
  char *path;        /* "/package.Service/Method" (owned) */
  int algorithm;     /* MW_CONFIG_COMPRESS_*, or -1 */
  int64_t min_bytes; /* or -1 */
} mw_config_compress_method;

/* Fills c with the defaults. c owns nothing yet afterwards except defaults. */
void mw_config_init(mw_config *c);

/* Loads and validates a YAML file on top of the defaults in c. Every problem
 * goes to diag as "file:line:column: message"; returns 0 when there was none,
 * -1 otherwise (c then holds defaults for the keys that failed). */
int mw_config_load_file(mw_config *c, const char *path, mw_diag *diag);

/* The same, from a string; name is used in messages in place of a path and
 * relative paths resolve against base_dir (NULL: the current directory). */
int mw_config_load_string(mw_config *c, const char *yaml, size_t len,
                          const char *name, const char *base_dir,
                          mw_diag *diag);

/* What is wrong with a listen address ("HOST:PORT", "[IPv6]:PORT"), or NULL
 * when it is valid. */
const char *mw_config_check_address(const char *addr);
/* An upstream written as a URL: "https://HOST:PORT" (TLS, *tls = 1) or
 * "http://HOST:PORT" (*tls = 0) -> the HOST:PORT inside s; anything else
 * is s itself, *tls left as it was. */
const char *mw_config_upstream_address(const char *s, int *tls);

/* Frees everything c owns and resets it to defaults; safe to call twice. */
void mw_config_free(mw_config *c);

#endif
