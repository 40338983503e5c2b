/* REST transcoding (codec/mw_transcode.h): templates, the route table and
 * its conflicts, matching, path variables, query parameters, bodies, the
 * response side and errors as google.rpc.Status JSON. Requests are checked
 * by the JSON of the request message they become. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mw_diag.h"
#include "codec/mw_json.h"
#include "codec/mw_transcode.h"
#include "mw_test.h"
#include "schema/mw_schema.h"
#include "upb/encode.h"
#include "upb/reflection.h"

static mw_schema *g_schema;
static const upb_DefPool *g_pool;
static mw_transcode *g_t;
static const upb_ServiceDef *g_svc;
static mw_transcode_error g_err;

/* The request a call becomes, as JSON (static), or NULL with g_err set. */
static const char *call_q(const char *method, const char *path, const char *query, const char *body,
                          const char *ctype, int opts, const char **grpc_path) {
  static char out[2048];
  upb_Arena *a = upb_Arena_New();
  mw_transcode_call c;
  memset(&g_err, 0, sizeof g_err);
  const char *res = NULL;
  if (mw_transcode_match(g_t, method, path, strlen(path), query, query ? strlen(query) : 0, body,
                         body ? strlen(body) : 0, ctype, opts, NULL, a, &c, &g_err) == 0) {
    const char *j;
    size_t jl;
    char err[256];
    if (mw_json_from_binary(c.request, c.request_len, upb_MethodDef_InputType(c.method), g_pool, 0,
                            NULL, a, &j, &jl, err, sizeof err) == MW_JSON_OK) {
      snprintf(out, sizeof out, "%s %s", c.grpc_path, j);
      res = out;
    }
    if (grpc_path) *grpc_path = c.grpc_path;
  }
  upb_Arena_Free(a);
  return res;
}

static const char *call(const char *method, const char *path, const char *body) {
  return call_q(method, path, NULL, body, body ? "application/json" : NULL, 0, NULL);
}

static mw_transcode *build(const mw_transcode_rule *rules, size_t n, mw_diag *d) {
  const upb_ServiceDef *svcs[] = {g_svc};
  return mw_transcode_build(g_pool, svcs, 1, rules, n, d);
}

static void test_table(void) {
  /* 9 methods with options, ListBooks with one additional binding */
  MW_CHECK_INT(mw_transcode_route_count(g_t), 10);
  bool saw_custom = false;
  for (size_t i = 0; i < mw_transcode_route_count(g_t); i++) {
    const mw_transcode_route *r = mw_transcode_route_at(g_t, i);
    if (strcmp(mw_transcode_route_http_method(r), "SEARCH") == 0) {
      saw_custom = true;
      MW_CHECK_STR(mw_transcode_route_template(r), "/v1/search");
      MW_CHECK_STR(mw_transcode_route_grpc_path(r), "/library.v1.Library/Search");
      MW_CHECK_STR(upb_MethodDef_Name(mw_transcode_route_method(r)), "Search");
    }
  }
  MW_CHECK(saw_custom);
  MW_CHECK(mw_transcode_route_at(g_t, 99) == NULL);
}

static void test_templates_and_variables(void) {
  MW_CHECK_STR(call("GET", "/v1/shelves/s1", NULL),
               "/library.v1.Library/GetShelf {\"name\":\"shelves/s1\"}");
  MW_CHECK_STR(call("GET", "/v1/shelves/s1/books", NULL),
               "/library.v1.Library/ListBooks {\"parent\":\"shelves/s1\"}");
  MW_CHECK_STR(call("GET", "/v1/books", NULL), "/library.v1.Library/ListBooks {}");
  /* nested field in the path, body a field */
  MW_CHECK_STR(call("PATCH", "/v1/shelves/s1/books/b2", "{\"title\": \"T\", \"pages\": 3}"),
               "/library.v1.Library/UpdateBook {\"book\":{\"name\":\"shelves/s1/books/b2\","
               "\"title\":\"T\",\"pages\":\"3\"}}");
  /* the path wins over the body for the same field */
  MW_CHECK_STR(call("PATCH", "/v1/shelves/s1/books/b2", "{\"name\": \"other\"}"),
               "/library.v1.Library/UpdateBook {\"book\":{\"name\":\"shelves/s1/books/b2\"}}");
  /* a verb */
  MW_CHECK_STR(call("POST", "/v1/shelves/s1/books/b2:move", "{\"otherShelfName\": \"shelves/s9\"}"),
               "/library.v1.Library/MoveBook {\"name\":\"shelves/s1/books/b2\","
               "\"otherShelfName\":\"shelves/s9\"}");
  /* "**": zero or more segments, %2F kept in a multi-segment variable */
  MW_CHECK_STR(call("GET", "/files/a/b/c.txt", NULL),
               "/library.v1.Library/GetFile {\"path\":\"a/b/c.txt\"}");
  MW_CHECK_STR(call("GET", "/files", NULL), "/library.v1.Library/GetFile {}");
  MW_CHECK_STR(call("GET", "/files/a%2Fb/%41%20c", NULL),
               "/library.v1.Library/GetFile {\"path\":\"a%2Fb/A c\"}");
  /* single-segment variables decode everything, %2F included */
  MW_CHECK_STR(
      call_q("PUT", "/v1/echo/a%2Fb%20c/x%3Ay", NULL, "{\"text\": \"t\"}", NULL, 0, NULL),
      "/library.v1.Library/Echo {\"id\":\"a/b c\",\"sub\":{\"id\":\"x:y\"},\"text\":\"t\"}");
  /* literal segments compare decoded */
  MW_CHECK_STR(call("GET", "/v1/%73helves/s1", NULL),
               "/library.v1.Library/GetShelf {\"name\":\"shelves/s1\"}");
  /* a custom method */
  MW_CHECK_STR(call("SEARCH", "/v1/search", "{\"query\": \"q\"}"),
               "/library.v1.Library/Search {\"query\":\"q\"}");
  /* shapes that do not match */
  MW_CHECK(call("GET", "/v1/shelves", NULL) == NULL);
  MW_CHECK_INT(g_err.http_status, 404);
  MW_CHECK_INT(g_err.code, 5);
  MW_CHECK_CONTAINS(g_err.message, "no route for GET /v1/shelves");
  MW_CHECK(call("GET", "/v1/shelves/s1/", NULL) == NULL);
  MW_CHECK(call("GET", "/v1/shelves//books", NULL) == NULL);
  MW_CHECK(call("GET", "/v1/shelves/s1/books/b2:move", NULL) == NULL);
  MW_CHECK_INT(g_err.http_status, 405);
  MW_CHECK_INT(g_err.code, 12);
  /* the update and delete templates take "b2:move" for their last "*" */
  MW_CHECK_STR(g_err.allow, "PATCH, DELETE, POST");
  MW_CHECK(call("POST", "/v1/shelves/s1/books/b2:copy", "{}") == NULL);
  MW_CHECK_INT(g_err.http_status, 405);
  MW_CHECK_STR(g_err.allow, "PATCH, DELETE");
  MW_CHECK(call("GET", "v1/books", NULL) == NULL);
  MW_CHECK_INT(g_err.http_status, 400);
  MW_CHECK(call("GET", "/files/%zz", NULL) == NULL);
  MW_CHECK_CONTAINS(g_err.message, "path variable 'path': invalid %-encoding");
  /* 405 lists every method of the path */
  MW_CHECK(call("PUT", "/v1/shelves/s1/books", "{}") == NULL);
  MW_CHECK_INT(g_err.http_status, 405);
  MW_CHECK_STR(g_err.allow, "GET, POST");
}

static void test_query(void) {
  const char *gp;
  MW_CHECK_STR(
      call_q("GET", "/v1/books",
             "pageSize=10&page_token=a+b%21&tags=x&tags=y&genre=POETRY&genres=1&genres=FICTION"
             "&since=2024-01-02T03:04:05Z&maxAge=1.5s&readMask=a.bC,d&minPages=7"
             "&include_deleted=true&token=AQID&filter.author=Ann&filter.inner.year=1999"
             "&score=-0.5&big=18446744073709551615",
             NULL, NULL, 0, &gp),
      "/library.v1.Library/ListBooks {\"pageSize\":10,\"pageToken\":\"a "
      "b!\",\"tags\":[\"x\",\"y\"],"
      "\"genre\":\"POETRY\",\"genres\":[\"FICTION\",\"FICTION\"],\"since\":\"2024-01-02T03:04:"
      "05Z\","
      "\"maxAge\":\"1.500s\",\"readMask\":\"a.bC,d\",\"minPages\":7,\"includeDeleted\":true,"
      "\"token\":\"AQID\",\"filter\":{\"author\":\"Ann\",\"inner\":{\"year\":\"1999\"}},"
      "\"score\":-0.5,\"big\":\"18446744073709551615\"}");
  if (g_err.message[0]) fprintf(stderr, "  %s\n", g_err.message);
  MW_CHECK_STR(gp, "/library.v1.Library/ListBooks");
  /* a '?' in the path when query is NULL; empty pieces are skipped */
  MW_CHECK_STR(call("GET", "/v1/shelves/s1/books?page_size=2&&", NULL),
               "/library.v1.Library/ListBooks {\"parent\":\"shelves/s1\",\"pageSize\":2}");
  /* a.x and b.x are different fields */
  MW_CHECK_STR(
      call_q("GET", "/v1/books", "filter.author=a&other.author=b", NULL, NULL, 0, NULL),
      "/library.v1.Library/ListBooks {\"filter\":{\"author\":\"a\"},\"other\":{\"author\":\"b\"}}");
  struct {
    const char *q, *err;
  } bad[] = {
      {"page_size=x", "query parameter 'page_size': 'x' is not an integer"},
      {"page_size=1&pageSize=2", "query parameter 'pageSize': given twice"},
      {"genre=JAZZ", "query parameter 'genre': unknown value \"JAZZ\" of enum library.v1.Genre"},
      {"include_deleted=yes", "'yes' is not true or false"},
      {"since=yesterday", "query parameter 'since': invalid Timestamp"},
      {"nope=1",
       "query parameter 'nope': names a field the message lacks (of library.v1.ListBooksRequest)"},
      {"filter=x", "query parameter 'filter': a message field cannot be given in a query"},
      {"labels=x", "query parameter 'labels': a map cannot be given in a query"},
      {"books.title=x", "names a path through a repeated or non-message field"},
      {"page_size.x=1", "names a path through a repeated or non-message field"},
      {"token=%G1", "invalid %-encoding"},
      {"big=-1", "integer -1 out of range"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    MW_CHECK(call_q("GET", "/v1/books", bad[i].q, NULL, NULL, 0, NULL) == NULL);
    MW_CHECK_INT(g_err.http_status, 400);
    MW_CHECK_INT(g_err.code, 3);
    MW_CHECK_CONTAINS(g_err.message, bad[i].err);
  }
  /* unknown parameters skipped when asked */
  MW_CHECK_STR(call_q("GET", "/v1/books", "nope=1&page_size=3&x.y=2", NULL, NULL,
                      MW_TRANSCODE_IGNORE_UNKNOWN_QUERY, NULL),
               "/library.v1.Library/ListBooks {\"pageSize\":3}");
  /* a field the path binds */
  MW_CHECK(call_q("GET", "/v1/shelves/s1/books", "parent=x", NULL, NULL, 0, NULL) == NULL);
  MW_CHECK_CONTAINS(g_err.message,
                    "query parameter 'parent': the field is already given by the path");
  /* body "*": no query parameters; body field: not its fields */
  MW_CHECK(call_q("POST", "/v1/shelves/s1/books/b:move", "x=1", "{}", NULL, 0, NULL) == NULL);
  MW_CHECK_CONTAINS(g_err.message, "takes no query parameters");
  MW_CHECK(call_q("POST", "/v1/shelves/s1/books", "book.title=x", "{}", NULL, 0, NULL) == NULL);
  MW_CHECK_CONTAINS(g_err.message, "already given by the body");
  MW_CHECK_STR(
      call_q("POST", "/v1/shelves/s1/books", "request_id=r1", "{\"title\": \"T\"}", NULL, 0, NULL),
      "/library.v1.Library/CreateBook {\"parent\":\"shelves/s1\",\"book\":{\"title\":\"T\"},"
      "\"requestId\":\"r1\"}");
}

static void test_bodies(void) {
  /* no body, empty body, whitespace body */
  MW_CHECK_STR(call_q("POST", "/v1/shelves/s1/books", NULL, "", NULL, 0, NULL),
               "/library.v1.Library/CreateBook {\"parent\":\"shelves/s1\"}");
  MW_CHECK_STR(call_q("SEARCH", "/v1/search", NULL, " \n", NULL, 0, NULL),
               "/library.v1.Library/Search {}");
  /* content types */
  MW_CHECK(call_q("SEARCH", "/v1/search", NULL, "{}", "text/plain", 0, NULL) == NULL);
  MW_CHECK_INT(g_err.http_status, 415);
  MW_CHECK_CONTAINS(g_err.message, "must be JSON");
  MW_CHECK(call_q("SEARCH", "/v1/search", NULL, "{}", "application/json; charset=utf-8", 0, NULL) !=
           NULL);
  MW_CHECK(call_q("SEARCH", "/v1/search", NULL, "{}", "application/vnd.api+json", 0, NULL) != NULL);
  /* body errors name the field */
  MW_CHECK(call("SEARCH", "/v1/search", "{\"query\": 5}") == NULL);
  MW_CHECK_INT(g_err.http_status, 400);
  MW_CHECK_STR(g_err.message, "request body: field 'query': expected a string");
  MW_CHECK(call("POST", "/v1/shelves/s1/books", "{\"nope\": 1}") == NULL);
  MW_CHECK_STR(g_err.message, "request body: field 'nope': no such field in library.v1.Book");
  MW_CHECK(call_q("POST", "/v1/shelves/s1/books", NULL, "{\"nope\": 1}", NULL,
                  MW_TRANSCODE_IGNORE_UNKNOWN_FIELDS, NULL) != NULL);
  MW_CHECK(call("POST", "/v1/shelves/s1/books", "[1]") == NULL);
  MW_CHECK_CONTAINS(g_err.message, "expected an object");
  /* a route without a body refuses one */
  MW_CHECK(call_q("GET", "/v1/books", NULL, "{\"x\":1}", "application/json", 0, NULL) == NULL);
  MW_CHECK_CONTAINS(g_err.message, "GET /v1/books takes no request body");
  /* limits: the JSON body and the request message */
  upb_Arena *a = upb_Arena_New();
  mw_transcode_call c;
  mw_json_limits lim = {8, 0, 0};
  const char *big = "{\"query\": \"0123456789\"}";
  MW_CHECK_INT(mw_transcode_match(g_t, "SEARCH", "/v1/search", 10, NULL, 0, big, strlen(big), NULL,
                                  0, &lim, a, &c, &g_err),
               -1);
  MW_CHECK_INT(g_err.http_status, 413);
  MW_CHECK_INT(g_err.code, 8);
  mw_json_limits lim2 = {0, 5, 0};
  MW_CHECK_INT(mw_transcode_match(g_t, "SEARCH", "/v1/search", 10, NULL, 0, big, strlen(big), NULL,
                                  0, &lim2, a, &c, &g_err),
               -1);
  MW_CHECK_INT(g_err.http_status, 413);
  MW_CHECK_CONTAINS(g_err.message, "the request message is 12 bytes, more than 5");
  upb_Arena_Free(a);
}

/* The reply of a call, encoded from JSON, back to JSON. */
static const char *respond(const char *method, const char *path, const char *reply_json, int opts) {
  static char out[1024];
  upb_Arena *a = upb_Arena_New();
  mw_transcode_call c;
  const char *res = NULL;
  if (mw_transcode_match(g_t, method, path, strlen(path), NULL, 0, NULL, 0, NULL, 0, NULL, a, &c,
                         &g_err) == 0) {
    const char *bin, *j;
    size_t bl, jl;
    char err[256];
    if (mw_json_to_binary(reply_json, strlen(reply_json), upb_MethodDef_OutputType(c.method),
                          g_pool, 0, NULL, a, &bin, &bl, err, sizeof err) == MW_JSON_OK &&
        mw_transcode_response(g_t, &c, bin, bl, opts, NULL, a, &j, &jl, &g_err) == 0) {
      snprintf(out, sizeof out, "%s", j);
      res = out;
    }
  }
  upb_Arena_Free(a);
  return res;
}

static void test_response(void) {
  MW_CHECK_STR(respond("GET", "/v1/shelves/s1", "{\"name\": \"shelves/s1\", \"theme\": \"sf\"}", 0),
               "{\"name\":\"shelves/s1\",\"theme\":\"sf\"}");
  MW_CHECK_STR(respond("GET", "/v1/shelves/s1", "{}", MW_JSON_EMIT_DEFAULTS),
               "{\"name\":\"\",\"theme\":\"\"}");
  /* response_body: the field's value alone */
  MW_CHECK_STR(respond("GET", "/files/a", "{\"path\": \"a\", \"content\": \"aGk=\"}", 0),
               "\"aGk=\"");
  MW_CHECK_STR(respond("GET", "/files/a", "{}", 0), "\"\"");
  /* a reply that is not the response type's binary */
  upb_Arena *a = upb_Arena_New();
  mw_transcode_call c;
  MW_CHECK_INT(mw_transcode_match(g_t, "GET", "/v1/books", 9, NULL, 0, NULL, 0, NULL, 0, NULL, a,
                                  &c, &g_err),
               0);
  const char *j;
  size_t jl;
  MW_CHECK_INT(mw_transcode_response(g_t, &c, "\x0a\x09", 2, 0, NULL, a, &j, &jl, &g_err), -1);
  MW_CHECK_INT(g_err.http_status, 500);
  MW_CHECK_CONTAINS(g_err.message, "malformed wire data");
  upb_Arena_Free(a);
}

static void test_status_json(void) {
  int http;
  const char *out;
  size_t len;
  char err[128];
  upb_Arena *a = upb_Arena_New();
  MW_CHECK_INT(mw_transcode_status_json(g_pool, 5, "no such shelf", NULL, 0, a, &out, &len, &http,
                                        err, sizeof err),
               0);
  MW_CHECK_INT(http, 404);
  MW_CHECK_STR(out, "{\"code\":5,\"message\":\"no such shelf\",\"details\":[]}");
  /* details from a serialized google.rpc.Status: known types as Any JSON,
   * an unknown one dropped */
  const char *st_json =
      "{\"code\": 8, \"message\": \"ignored\", \"details\": ["
      "{\"@type\": \"type.googleapis.com/google.rpc.RetryInfo\", \"retryDelay\": \"30s\"},"
      "{\"@type\": \"type.googleapis.com/google.rpc.ErrorInfo\", \"reason\": \"QUOTA\", "
      "\"domain\": \"x\"}]}";
  const upb_MessageDef *sm = upb_DefPool_FindMessageByName(g_pool, "google.rpc.Status");
  const char *bin;
  size_t bl;
  MW_CHECK_INT(mw_json_to_binary(st_json, strlen(st_json), sm, g_pool, 0, NULL, a, &bin, &bl, err,
                                 sizeof err),
               MW_JSON_OK);
  /* append an Any of a type the pool lacks: field 3, {type_url: "x/no.Such", value: ""} */
  char withbad[512];
  memcpy(withbad, bin, bl);
  const char bad[] = "\x1a\x0b\x0a\x09x/no.Such";
  memcpy(withbad + bl, bad, sizeof bad - 1);
  MW_CHECK_INT(mw_transcode_status_json(g_pool, 8, "slow down", withbad, bl + sizeof bad - 1, a,
                                        &out, &len, &http, err, sizeof err),
               0);
  MW_CHECK_INT(http, 429);
  MW_CHECK_STR(
      out,
      "{\"code\":8,\"message\":\"slow down\",\"details\":[{\"@type\":\"type.googleapis.com/"
      "google.rpc.RetryInfo\",\"retryDelay\":\"30s\"},{\"@type\":\"type.googleapis.com/"
      "google.rpc.ErrorInfo\",\"reason\":\"QUOTA\",\"domain\":\"x\"}]}");
  /* garbage details: code and message still go out */
  MW_CHECK_INT(
      mw_transcode_status_json(g_pool, 13, "boom", "\xff", 1, a, &out, &len, NULL, err, sizeof err),
      0);
  MW_CHECK_STR(out, "{\"code\":13,\"message\":\"boom\",\"details\":[]}");
  int expect[] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
                  400, 409, 400, 501, 500, 503, 500, 401};
  for (int i = 0; i <= 16; i++) MW_CHECK_INT(mw_transcode_http_status(i), expect[i]);
  MW_CHECK_INT(mw_transcode_http_status(17), 500);
  MW_CHECK_INT(mw_transcode_http_status(-1), 500);
  upb_Arena_Free(a);
}

static void test_config_rules(void) {
  mw_diag d = {0};
  /* a rule for a method without options, with an additional binding */
  mw_transcode_rule more[] = {{NULL, "post", "/v2/plain", "*", NULL, NULL, 0}};
  mw_transcode_rule rules[] = {
      {"library.v1.Library.Plain", "get", "/v2/plain/{id}", NULL, "text", more, 1}};
  mw_transcode *t = build(rules, 1, &d);
  MW_CHECK(t != NULL);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  MW_CHECK_INT(mw_transcode_route_count(t), 12);
  mw_transcode *keep = g_t;
  g_t = t;
  MW_CHECK_STR(call("GET", "/v2/plain/7", NULL), "/library.v1.Library/Plain {\"id\":\"7\"}");
  MW_CHECK_STR(call("POST", "/v2/plain", "{\"n\": 2}"), "/library.v1.Library/Plain {\"n\":2}");
  MW_CHECK_STR(respond("GET", "/v2/plain/7", "{\"id\": \"7\", \"text\": \"hi\"}", 0), "\"hi\"");
  g_t = keep;
  mw_transcode_free(t);

  /* a config rule replaces a method's own options */
  mw_transcode_rule repl[] = {
      {"library.v1.Library.GetShelf", "GET", "/v9/{name}", NULL, NULL, NULL, 0}};
  t = build(repl, 1, &d);
  MW_CHECK(t != NULL);
  MW_CHECK_INT(mw_transcode_route_count(t), 10);
  g_t = t;
  MW_CHECK_STR(call("GET", "/v9/x", NULL), "/library.v1.Library/GetShelf {\"name\":\"x\"}");
  MW_CHECK(call("GET", "/v1/shelves/s1", NULL) == NULL);
  g_t = keep;
  mw_transcode_free(t);
  mw_diag_free(&d);
}

/* Rules that must not build, each with its message. */
static void test_build_errors(void) {
  struct {
    mw_transcode_rule rule;
    const char *err;
  } cases[] = {
      {{"library.v1.Library.Plain", "GET", "/v1/shelves/{id}", NULL, NULL, NULL, 0},
       "http rules: GET /v1/{name=shelves/*} (library.v1.Library.GetShelf, option) and GET "
       "/v1/shelves/{id} (library.v1.Library.Plain, config) match the same requests"},
      {{"library.v1.Library.Plain", "*", "/v1/books", NULL, NULL, NULL, 0},
       "match the same requests"},
      {{"library.v1.Library.Nope", "GET", "/x", NULL, NULL, NULL, 0},
       "http.rules[0]: selector 'library.v1.Library.Nope' names no served method"},
      {{"Nope", "GET", "/x", NULL, NULL, NULL, 0}, "names no served method"},
      {{"library.v1.Library.Plain", "GET", "x", NULL, NULL, NULL, 0},
       "http rule of library.v1.Library.Plain (config): template 'x': it does not start with '/'"},
      {{"library.v1.Library.Plain", "GET", "/", NULL, NULL, NULL, 0}, "it has no segment"},
      {{"library.v1.Library.Plain", "GET", "/a//b", NULL, NULL, NULL, 0}, "an empty segment"},
      {{"library.v1.Library.Plain", "GET", "/a/**/b", NULL, NULL, NULL, 0},
       "'**' before the last segment"},
      {{"library.v1.Library.Plain", "GET", "/a/{id", NULL, NULL, NULL, 0}, "an unclosed '{'"},
      {{"library.v1.Library.Plain", "GET", "/a/id}", NULL, NULL, NULL, 0}, "an unmatched '}'"},
      {{"library.v1.Library.Plain", "GET", "/a/{id={sub.id}}", NULL, NULL, NULL, 0},
       "a variable inside a variable"},
      {{"library.v1.Library.Plain", "GET", "/a/{nope}", NULL, NULL, NULL, 0},
       "template '/a/{nope}': variable 'nope': a field the message lacks"},
      {{"library.v1.Library.Plain", "GET", "/a/{sub}", NULL, NULL, NULL, 0},
       "variable 'sub': a path variable bound to a repeated, map or message field"},
      {{"library.v1.Library.Plain", "GET", "/a/{id}/{id}", NULL, NULL, NULL, 0},
       "the same field bound twice"},
      {{"library.v1.Library.Plain", "GET", "/a/x{id}", NULL, NULL, NULL, 0},
       "a segment mixing a literal and a variable"},
      {{"library.v1.Library.Plain", "GET", "/a/{id}x", NULL, NULL, NULL, 0},
       "text after a variable in the same segment"},
      {{"library.v1.Library.Plain", "GET", "/a:b:c", NULL, NULL, NULL, 0},
       "a verb that is not a literal"},
      {{"library.v1.Library.Plain", "GET", "/a", "*", NULL, NULL, 0}, "GET /a cannot have a body"},
      {{"library.v1.Library.Plain", "POST", "/a", "nope", NULL, NULL, 0},
       "body 'nope' is not a field of library.v1.EchoRequest"},
      {{"library.v1.Library.Plain", "POST", "/a/{id}", "id", NULL, NULL, 0},
       "body 'id' is also bound by the path ('id')"},
      {{"library.v1.Library.Plain", "POST", "/a", "*", "nope", NULL, 0},
       "response_body 'nope' is not a field of library.v1.EchoRequest"},
      {{"library.v1.Library.Plain", "", "/a", NULL, NULL, NULL, 0}, "no HTTP method"},
      {{"library.v1.Library.Plain", "GET", "/a/{sub.nope}", NULL, NULL, NULL, 0},
       "a field the message lacks"},
      {{"library.v1.Library.Plain", "GET", "/a/{id.x}", NULL, NULL, NULL, 0},
       "a path through a repeated or non-message field"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mw_diag d = {0};
    mw_transcode *t = build(&cases[i].rule, 1, &d);
    MW_CHECK(t == NULL);
    MW_CHECK(mw_diag_count(&d) >= 1);
    MW_CHECK_CONTAINS(mw_diag_count(&d) ? d.msgs[0] : "", cases[i].err);
    if (t) fprintf(stderr, "  case %zu built\n", i);
    mw_transcode_free(t);
    mw_diag_free(&d);
  }
  /* two additional bindings of one rule that collide */
  mw_transcode_rule twice[] = {{NULL, "GET", "/v2/p/{id}", NULL, NULL, NULL, 0}};
  mw_transcode_rule r2 = {"library.v1.Library.Plain", "GET", "/v2/p/{text}", NULL, NULL, twice, 1};
  mw_diag d = {0};
  MW_CHECK(build(&r2, 1, &d) == NULL);
  MW_CHECK_CONTAINS(mw_diag_count(&d) ? d.msgs[0] : "",
                    "GET /v2/p/{text} (library.v1.Library.Plain, config) and GET /v2/p/{id}");
  mw_diag_free(&d);
  mw_transcode_free(NULL);
}

/* Literal beats "*" beats "**"; a verb beats none. */
static void test_precedence(void) {
  mw_transcode_rule rules[] = {
      {"library.v1.Library.Plain", "GET", "/files/special", NULL, NULL, NULL, 0},
  };
  mw_diag d = {0};
  mw_transcode *t = build(rules, 1, &d);
  MW_CHECK(t != NULL);
  mw_transcode *keep = g_t;
  g_t = t;
  MW_CHECK_STR(call("GET", "/files/special", NULL), "/library.v1.Library/Plain {}");
  MW_CHECK_STR(call("GET", "/files/special/x", NULL),
               "/library.v1.Library/GetFile {\"path\":\"special/x\"}");
  g_t = keep;
  mw_transcode_free(t);
  mw_diag_free(&d);
}

/* MW_TRANSCODE_BENCH=N: N matches of a typical request (a path variable,
 * four query parameters) and of a body request, timed (a measurement to
 * run by hand, not a test). */
static int bench(long n) {
  struct {
    const char *method, *path, *query, *body;
  } reqs[] = {
      {"GET", "/v1/shelves/s1/books", "page_size=10&page_token=abc&genre=POETRY&tags=x", NULL},
      {"PATCH", "/v1/shelves/s1/books/b2", NULL,
       "{\"title\": \"T\", \"pages\": 3, \"authors\": [\"a\", \"b\"]}"},
  };
  for (size_t k = 0; k < 2; k++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
      upb_Arena *a = upb_Arena_New();
      mw_transcode_call c;
      if (mw_transcode_match(g_t, reqs[k].method, reqs[k].path, strlen(reqs[k].path), reqs[k].query,
                             reqs[k].query ? strlen(reqs[k].query) : 0, reqs[k].body,
                             reqs[k].body ? strlen(reqs[k].body) : 0, NULL, 0, NULL, a, &c,
                             &g_err) != 0)
        return 1;
      upb_Arena_Free(a);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / (double)n;
    printf("%s %s%s%s: %.0f ns per match (%zu routes)\n", reqs[k].method, reqs[k].path,
           reqs[k].query ? "?" : "", reqs[k].query ? reqs[k].query : "", ns,
           mw_transcode_route_count(g_t));
  }
  return 0;
}

int main(void) {
  const char *dirs[] = {MW_TEST_DATA "/transcode"};
  mw_schema_input in = {dirs, 1, NULL, 0, NULL, 0};
  mw_diag d = {0};
  g_schema = mw_schema_load(&in, &d);
  if (!g_schema) {
    fprintf(stderr, "schema: %s\n", mw_diag_count(&d) ? d.msgs[0] : "?");
    return 1;
  }
  g_pool = mw_schema_pool(g_schema);
  g_svc = upb_DefPool_FindServiceByName(g_pool, "library.v1.Library");
  MW_CHECK(g_svc != NULL);
  g_t = build(NULL, 0, &d);
  if (!g_t) {
    fprintf(stderr, "build: %s\n", mw_diag_count(&d) ? d.msgs[0] : "?");
    return 1;
  }
  const char *bench_n = getenv("MW_TRANSCODE_BENCH");
  if (bench_n) {
    int rc = bench(atol(bench_n));
    mw_transcode_free(g_t);
    mw_schema_free(g_schema);
    return rc;
  }
  MW_RUN(test_table);
  MW_RUN(test_templates_and_variables);
  MW_RUN(test_query);
  MW_RUN(test_bodies);
  MW_RUN(test_response);
  MW_RUN(test_status_json);
  MW_RUN(test_config_rules);
  MW_RUN(test_build_errors);
  MW_RUN(test_precedence);
  mw_transcode_free(g_t);
  mw_schema_free(g_schema);
  mw_diag_free(&d);
  return mw_test_done();
}
