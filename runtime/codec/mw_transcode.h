/* REST transcoding (google.api.http): HTTP requests with JSON bodies <->
 * gRPC methods and their protobuf messages, as googleapis' http.proto
 * defines it. A pure module: no sockets, no h2o, no gRPC; the HTTP
 * listener calls it with what it read and serves what it returns.
 *
 * Per schema generation, mw_transcode_build compiles a route table from
 * the google.api.http options of the served methods (MethodOptions
 * extension 72295728, read from the descriptors as loaded: a .proto imports
 * google/api/annotations.proto, which the binary carries) and from rules
 * given in the configuration (http.rules, for .proto files that cannot be
 * edited: a rule there replaces the method's own options). Routes:
 *   - templates like "/v1/{name=shelves/\*}/books/{book}:verb" (the
 *     backslashes here only keep C's comment syntax out): literal
 *     segments, "*" (one segment), "**" (zero or more, last only),
 *     variables {field.path} (= {field.path=*}) and
 *     {field.path=a/\*\/b/\**} (the whole matched text), a final ":verb";
 *   - GET, PUT, POST, DELETE, PATCH and custom kinds ("*" for any), each
 *     rule's additional_bindings (one level);
 *   - body: "" (none), "*" (every field the path does not bind) or a
 *     top-level field; response_body: a top-level field of the response.
 * Errors found while building (a template that does not parse, a field
 * path the message lacks or that names a repeated, map or message field,
 * two routes that match the same requests) fail the build with a message
 * naming the method(s) and the rule, so a reload keeps the old generation.
 * Methods without a rule get no route here: the HTTP listener's Connect
 * handler answers POST /pkg.Service/Method for every method already.
 *
 * Matching (mw_transcode_match): the most specific route wins (literal
 * segments before "*" before "**", segment by segment; a verb before none).
 * Path variables are percent-decoded (a multi-segment variable keeps
 * %2F as it is, as http.proto says); query parameters (a=1&b.c=x&r=1&r=2,
 * '+' as space, field paths by .proto or JSON name, repeated fields by
 * repeating the key, enums by name or number, well-known types in their
 * JSON string forms) fill fields neither the path nor the body binds; the
 * body is JSON (codec/mw_json.h). The result is the gRPC method and its
 * request as protobuf binary, so everything behind it is a plain call.
 *
 * Errors of a request carry the HTTP status and the gRPC code to answer
 * with: 404 NOT_FOUND (no route), 405 UNIMPLEMENTED (the path has routes
 * for other methods; allow lists them), 400 INVALID_ARGUMENT (a bad
 * parameter, named: "query parameter 'page_size': 'x' is not an integer"),
 * 415 (a body that is not JSON), 413 RESOURCE_EXHAUSTED (past the limits).
 *
 * The response side: mw_transcode_response turns the reply's binary into
 * JSON (the response_body field alone when the rule has one);
 * mw_transcode_status_json writes an error as google.rpc.Status JSON,
 * {"code":5,"message":"...","details":[{"@type":...}]}, with the HTTP
 * status of google/rpc/code.proto's mapping (mw_transcode_http_status). */
#ifndef MW_TRANSCODE_H
#define MW_TRANSCODE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/mw_diag.h"
#include "codec/mw_json.h"
#include "upb/arena.h"
#include "upb/def.h"

/* A rule from the configuration (http.rules), or one of its
 * additional_bindings (selector NULL). Strings are the caller's; the table
 * copies what it keeps. */
typedef struct mw_transcode_rule {
  const char *selector;      /* "pkg.Service.Method" */
  const char *method;        /* "GET", "PUT", "POST", "DELETE", "PATCH", a custom kind, "*" */
  const char *path;          /* the template */
  const char *body;          /* NULL or "": none; "*"; a top-level field */
  const char *response_body; /* NULL or "": the whole response; a top-level field */
  const struct mw_transcode_rule *additional;
  size_t n_additional;
} mw_transcode_rule;

typedef struct mw_transcode mw_transcode;
typedef struct mw_transcode_route mw_transcode_route;

/* Compiles the routes of the given services' methods (their options, then
 * rules for the methods they name) against pool. Returns the table (owned
 * by the caller, mw_transcode_free), or NULL with diag filled. An empty
 * table (no rule anywhere) is not an error. Called once per generation when
 * it is built (gen/), never on the request path. */
mw_transcode *mw_transcode_build(const upb_DefPool *pool, const upb_ServiceDef *const *services,
                                 size_t n_services, const mw_transcode_rule *rules,
                                 size_t n_rules, mw_diag *diag);

/* Frees the table; NULL is fine. The generation's owner calls it when the
 * generation goes. */
void mw_transcode_free(mw_transcode *t);

/* Routes in the table, and one route's parts (for logs, /debug pages and
 * tests): its HTTP method, template as written, gRPC method and path
 * ("/pkg.Service/Method"). */
size_t mw_transcode_route_count(const mw_transcode *t);
const mw_transcode_route *mw_transcode_route_at(const mw_transcode *t, size_t i);
const char *mw_transcode_route_http_method(const mw_transcode_route *r);
const char *mw_transcode_route_template(const mw_transcode_route *r);
const upb_MethodDef *mw_transcode_route_method(const mw_transcode_route *r);
const char *mw_transcode_route_grpc_path(const mw_transcode_route *r);

/* Options of mw_transcode_match (a bit set). */
enum {
  /* Skip query parameters that name no field (grpc-gateway's way) instead
   * of refusing the request. */
  MW_TRANSCODE_IGNORE_UNKNOWN_QUERY = 1 << 0,
  /* Skip unknown fields in the JSON body (MW_JSON_IGNORE_UNKNOWN). */
  MW_TRANSCODE_IGNORE_UNKNOWN_FIELDS = 1 << 1,
};

/* What a failed request is answered with. */
typedef struct mw_transcode_error {
  int http_status;  /* 400, 404, 405, 413, 415, 500 */
  int code;         /* the gRPC status code (3 INVALID_ARGUMENT, 5 NOT_FOUND...) */
  char message[320];
  char allow[64];   /* 405: the methods the path has, "GET, POST" (the Allow header) */
} mw_transcode_error;

/* A matched request. */
typedef struct mw_transcode_call {
  const mw_transcode_route *route; /* for mw_transcode_response */
  const upb_MethodDef *method;
  const char *grpc_path; /* "/pkg.Service/Method", owned by the table */
  const char *request;   /* the request message, protobuf binary, in the arena */
  size_t request_len;
} mw_transcode_call;

/* Routes one request: http_method as received ("GET"), path (without the
 * query; a '?' in it starts the query when query is NULL), query (after the
 * '?', NULL or "" for none), body and content_type (NULL: none given,
 * taken as JSON). limits bound the JSON body (max_in_bytes) and the request
 * binary (max_out_bytes: the method's max_receive_bytes). Everything the
 * call points to lives in a or in the table. Returns 0, or -1 with err
 * filled. Called by the HTTP listener for every request on a REST path. */
int mw_transcode_match(const mw_transcode *t, const char *http_method, const char *path,
                       size_t path_len, const char *query, size_t query_len, const char *body,
                       size_t body_len, const char *content_type, int options,
                       const mw_json_limits *limits, upb_Arena *a, mw_transcode_call *out,
                       mw_transcode_error *err);

/* The reply (protobuf binary of the method's response type) -> the JSON
 * body to send (NUL-terminated, in a): the response_body field's value
 * alone when the route has one, else the whole message. json_options are
 * mw_json.h's (MW_JSON_EMIT_DEFAULTS...). Returns 0, or -1 with err filled
 * (500 INTERNAL: a reply that does not decode or has no JSON form). */
int mw_transcode_response(const mw_transcode *t, const mw_transcode_call *call, const char *reply,
                          size_t reply_len, int json_options, const mw_json_limits *limits,
                          upb_Arena *a, const char **out, size_t *out_len,
                          mw_transcode_error *err);

/* The HTTP status for a gRPC status code (google/rpc/code.proto's mapping:
 * 0 200, 1 499, 2 500, 3 400, 4 504, 5 404, 6 409, 7 403, 8 429, 9 400,
 * 10 409, 11 400, 12 501, 13 500, 14 503, 15 500, 16 401; else 500). */
int mw_transcode_http_status(int code);

/* An error as the JSON of google.rpc.Status: code, message, and the details
 * of details_bin (a serialized google.rpc.Status, the grpc-status-details-bin
 * trailer; NULL/0 for none) as Any JSON, each resolved in pool (a detail of
 * a type the pool lacks is left out rather than failing the whole error).
 * Always has "code", "message" and "details". *http_status (may be NULL)
 * gets mw_transcode_http_status(code). Returns 0, or -1 (out of memory, or
 * pool lacks google.rpc.Status) with err filled. */
int mw_transcode_status_json(const upb_DefPool *pool, int code, const char *message,
                             const char *details_bin, size_t details_len, upb_Arena *a,
                             const char **out, size_t *out_len, int *http_status, char *err,
                             size_t errlen);

#endif
