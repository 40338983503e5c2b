/* WebSocket calls on the HTTP listener (docs/http.md#websocket): a
 * browser opens `GET /pkg.Service/Method` with `Upgrade: websocket`
 * (RFC 6455, over HTTP/1.1), and the socket then carries that one call,
 * one message per frame (text frames proto3 JSON, binary frames
 * protobuf), which is how browsers get client and bidi streaming.
 *
 * Each socket is one loopback call (core/mw_loopback.h), like every
 * request of http/mw_web.h, with ctx.protocol "websocket"; its requests go
 * one by one (mw_lb_call_send), so:
 * - Backpressure: a message read from the socket is handed to the call and
 *   the socket is not read again until the call took it (the handler's
 *   stream:recv and HTTP/2 flow control on the internal connection): a
 *   fast client fills its own TCP window, not memory here. Each message is
 *   held at most once, up to limits.max_receive_bytes (1009 past it).
 *   Responses are asked for one at a time, the next once the previous
 *   frame was handed to the socket.
 * - Cancellation: the socket closing (a close frame, a hang-up, an error)
 *   cancels the call; the handler's ctx:on_cancel runs.
 *
 * Threads: everything runs on the HTTP thread, as mw_web.c does. The framing
 * rules are http/mw_wsframe.h's. */
#ifndef MW_WEBSOCKET_H
#define MW_WEBSOCKET_H

#include <stddef.h>

#include "core/mw_loopback.h"
#include "core/mw_server.h"

struct st_h2o_req_t;
typedef struct mw_ws mw_ws;

/* lb and server are borrowed (they outlive the listener). max_message:
 * the largest request message (limits.max_receive_bytes); max_conns: open
 * WebSockets at most (http.max_connections), past which an upgrade gets
 * 503; timeout_ms (http.timeout): how long the call's last frames may take
 * to be written before the socket is closed anyway. */
mw_ws *mw_ws_new(mw_loopback *lb, mw_server *server, size_t max_message, size_t max_conns,
                 long timeout_ms);

/* Whether a request asks for a WebSocket (an Upgrade: websocket header). */
int mw_ws_wanted(struct st_h2o_req_t *req);

/* Answers such a request: 101 and a call, or an HTTP error for a bad
 * handshake (400, 426 for another version), a refused origin (403: an
 * Origin header not in http.cors.origins; origin_ok says whether it is
 * allowed or absent) or too many sockets (503). Returns 0. */
int mw_ws_serve(mw_ws *ws, struct st_h2o_req_t *req, int origin_ok);

/* Open WebSockets (tests, /debug). */
size_t mw_ws_count(const mw_ws *ws);

/* On the HTTP thread when the listener stops: every socket is closed and
 * its call cancelled; then ws is freed. NULL ok. */
void mw_ws_free(mw_ws *ws);

#endif
