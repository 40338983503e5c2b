/* What the l_*.c files (the functions Lua calls) share with each other and
 * with the rest of lua/: each file's open function, filling its part of the
 * moonwire.core table or a metatable, and the status object helpers every
 * part raises with. Metatable names are dotted: "moonwire.ctx". */
#ifndef MW_L_API_H
#define MW_L_API_H

#include <stddef.h>

#include <lua.h>

#define MW_MT_CTX "moonwire.ctx"
#define MW_MT_STREAM "moonwire.stream"
#define MW_MT_STATUS "moonwire.status"
#define MW_MT_SHARED "moonwire.shared"

/* Pushes a status error object {code=, message=} (no details). */
void mw_lstatus_push(lua_State *L, int code, const char *msg);
int mw_lstatus_is(lua_State *L, int idx);

/* Each adds its functions to the table on top of the stack (moonwire.core). */
void mw_lstatus_open(lua_State *L); /* l_status.c: status, fail, codes */
void mw_lctx_open(lua_State *L);    /* l_ctx.c: the ctx metatable,
                                       ctx_metadata_first, ctx_values_peek,
                                       ctx_response_counts */
void mw_lstream_open(lua_State *L); /* l_stream.c: the stream metatable */
void mw_lsleep_open(lua_State *L);  /* l_sleep.c: sleep */
void mw_lshield_open(lua_State *L); /* l_shield.c: shield */
void mw_llog_open(lua_State *L);    /* l_log.c: log, stats */
void mw_lschema_open(lua_State *L); /* l_schema.c: services, methods */
void mw_lhandoff_open(lua_State *L);/* mw_handoff.c: on_reload, on_restore */
void mw_lhealth_open(lua_State *L); /* l_health.c: health_*, draining */
void mw_ldrain_open(lua_State *L);  /* l_drain.c: on_drain */
void mw_lreflect_open(lua_State *L);/* l_reflect.c: the schema's files */
void mw_lintercept_open(lua_State *L);/* l_intercept.c: now, keep_traceback,
                                        config_interceptors */
void mw_ljson_open(lua_State *L);   /* l_json.c: json_decode, json_encode */
void mw_ljws_open(lua_State *L);    /* l_jws.c: b64url_decode, jws_key(s) */
void mw_lratelimit_open(lua_State *L); /* l_ratelimit.c: rate_take */
void mw_lshared_open(lua_State *L); /* l_shared.c: shared_dict, the moonwire.shared
                                       metatable */
/* l_shared.c: shared_define, for moonwire.core outside the server (the
 * specs), where no config makes the dicts. */
void mw_lshared_open_define(lua_State *L);
void mw_lclient_open(lua_State *L); /* l_client.c: client_channel, client_deadline,
                                       client_unary, client_start, client_open */
/* l_client.c: how much of the parent's remaining time a child call leaves
 * (config client.deadline_margin) and which request metadata keys it
 * inherits (client.propagate; the trace context always goes); copied, set
 * before any state runs. n == 0 frees the list. Returns 0, or -1 when out
 * of memory. */
int mw_lclient_configure(double margin_s, const char *const *propagate, size_t n);
void mw_lidem_open(lua_State *L);   /* l_idem.c: idem_* (idempotency keys) */
/* l_idem.c: frees the idempotency table and its waiters' notice, once no
 * server runs (cmd/serve.c, at the end); safe twice. */
void mw_lidem_free(void);
void mw_ltrace_open(lua_State *L);  /* l_trace.c: trace_start, trace_export,
                                       trace_options, trace_stats */
/* l_trace.c: pushes the span exporter's counters {exported=, dropped=,
 * queued=, failed_requests=} (core.trace_stats, mw.stats().tracing). */
void mw_ltrace_push_stats(lua_State *L);
void mw_lsessions_open(lua_State *L); /* l_sessions.c: session_* (mw.sessions),
                                         the moonwire.sessions metatable */
/* l_sessions.c: a joined session's publications continue once the call's
 * queue has room (the call's on_writable, mw_lcall.c). */
struct mw_lcall;
void mw_lsessions_on_writable(struct mw_lcall *h);
/* l_sessions.c: where the call's client says it left off, from its
 * Last-Event-ID (the last-event-id request metadata: "<epoch>:<offset>",
 * the ids the HTTP listener gives session publications on an event
 * stream). 1 with *offset and epoch (NUL-terminated) set; 0 when the call
 * has none or it is not of that form. */
int mw_lsessions_last_event_id(struct mw_lcall *h, unsigned long long *offset, char epoch[17]);
/* l_sessions.c: frees the blocked publishers' notice, once no server runs
 * (cmd/serve.c, at the end); safe twice. */
void mw_lsessions_free(void);
void mw_lyaml_open(lua_State *L);   /* l_yaml.c: load_yaml */
void mw_lstub_open(lua_State *L);   /* l_stub.c: stub_files, stub_all, message_shape,
                                       method_types, regex, stub_take, stub_used */
/* l_stub.c: frees the stubs' use counters, once no server runs (cmd/serve.c,
 * at the end); safe twice. */
void mw_lstub_free(void);
void mw_lmetrics_open(lua_State *L);/* l_metrics.c: metric_declare, metrics_on,
                                       moonwire.metric */

/* l_json.c: JSON limits. Depth counts nested objects and arrays. */
#define MW_JSON_DEFAULT_DEPTH 64
#define MW_JSON_MAX_DEPTH 200
#define MW_JSON_DEFAULT_BYTES (4 << 20)
/* Decodes the JSON text s (len bytes) and pushes its value; returns 1, or 0
 * with nothing pushed and err ("json: at byte N: what") filled. Raises only
 * on out of memory. */
int mw_ljson_decode(lua_State *L, const char *s, size_t len, int max_depth,
                    char *err, size_t errlen);

/* l_pattern.c: replaces string.find, match, gmatch and gsub in L's string
 * library with the bounded matcher (the string metatable's __index is that
 * table, so ("x"):find(...) uses it too). */
void mw_lpattern_install(lua_State *L);

/* l_drain.c: runs the state's mw.on_drain functions (errors are logged);
 * returns how many ran. */
int mw_ldrain_run(lua_State *L);

/* Pushes moonwire.core (every part above, plus version). */
int mw_lcore_open(lua_State *L);

/* The ctx and stream handles of a call: userdata whose pointer is cleared
 * when the call ends, so late use raises "the call has ended". */
struct mw_lcall;
typedef struct mw_handle {
  struct mw_lcall *h; /* NULL once the call has ended */
} mw_handle;
enum { MW_HANDLE_CTX = 0, MW_HANDLE_STREAM = 1 };
/* Pushes a new handle of h; h->handles[which] keeps it, so the call can
 * detach it at its end wherever the coroutine's stack stands. */
void mw_handle_push(lua_State *L, struct mw_lcall *h, int which);
/* The live call of the handle at idx, raising when it has ended. */
struct mw_lcall *mw_handle_check(lua_State *L, int idx, const char *mt);
/* The handle at index 1 for a handle's own method (or __index), which
 * holds the handle's metatable (named mt) as upvalue 1; raises a type
 * error for any other value. One comparison, where luaL_checkudata (in
 * mw_handle_check) looks the metatable up by name in the registry, ~300
 * instructions a check. */
mw_handle *mw_handle_self(lua_State *L, const char *mt);

/* l_stream.c: the call's read and writable events, for a handler that may
 * be waiting in stream:recv or stream:send. */
void mw_lstream_on_message(struct mw_lcall *h, int ok, const char *data,
                           size_t len, int has_msg);
void mw_lstream_on_writable(struct mw_lcall *h);
/* A request read for core.client_relay (h->relay_in armed) goes here:
 * l_client.c installs it when it opens, so that the stream layer does not
 * link the outbound one. */
extern void (*mw_lstream_relay_in)(struct mw_lcall *h, int ok, const char *data, size_t len,
                                   int has_msg);

#endif
