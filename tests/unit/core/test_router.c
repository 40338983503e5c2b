/* mw_router: routes, the UNIMPLEMENTED messages, bindings and the
 * reference count that tells the owner when a generation may go. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/mw_router.h"
#include "mw_test.h"
#include "schema/mw_methods.h"
#include "schema/mw_schema.h"

#define DIR MW_TEST_TMP "/router"

static const char proto_src[] =
    "syntax = \"proto3\";\n"
    "package rt;\n"
    "message M { string s = 1; }\n"
    "service Greeter {\n"
    "  rpc Bound(M) returns (M);\n"
    "  rpc Unbound(M) returns (M);\n"
    "  rpc Stream(stream M) returns (stream M);\n"
    "}\n"
    "service Other { rpc Ping(M) returns (M); }\n";

static mw_schema *g_schema;
static mw_methods *g_methods;

static void never_start(mw_handler *h, mw_call *c, const char *first, size_t len,
                        int has_first) {}
static mw_handler h_bound = {never_start}, h_stream = {never_start};

typedef struct owner_log {
  int releases;
} owner_log;

static void on_release(void *self) { ((owner_log *)self)->releases++; }

static mw_router *new_router(owner_log *log, unsigned id) {
  mw_router *r = mw_router_new(g_methods, id, (mw_router_owner){log, on_release});
  MW_CHECK(r != NULL);
  mw_router_bind(r, mw_methods_find(g_methods, "/rt.Greeter/Bound", 17)->index, &h_bound);
  mw_router_bind(r, mw_methods_find(g_methods, "/rt.Greeter/Stream", 18)->index, &h_stream);
  return r;
}

/* Routes path (NUL-terminated here) and returns the rc; *m, *h and msg as
 * the router left them. */
static char msg[512];
static const mw_method sentinel; /* not NULL, to see the router set *m */
static int route(mw_router *r, const char *path, const mw_method **m, mw_handler **h) {
  strcpy(msg, "(untouched)");
  *m = &sentinel;
  *h = &h_bound;
  return mw_router_route(r, path, strlen(path), m, h, msg, sizeof msg);
}

static void test_found(void) {
  owner_log log = {0};
  mw_router *r = new_router(&log, 7);
  const mw_method *m;
  mw_handler *h;
  MW_CHECK_INT(route(r, "/rt.Greeter/Bound", &m, &h), 0);
  MW_CHECK(m != NULL && strcmp(m->path, "/rt.Greeter/Bound") == 0);
  MW_CHECK(h == &h_bound);
  MW_CHECK_INT(m ? (int)m->kind : -1, MW_KIND_UNARY);
  MW_CHECK_INT(route(r, "/rt.Greeter/Stream", &m, &h), 0);
  MW_CHECK(h == &h_stream);
  MW_CHECK_INT(m ? (int)m->kind : -1, MW_KIND_BIDI_STREAMING);
  /* the path is taken by length: what follows it does not count */
  MW_CHECK_INT(mw_router_route(r, "/rt.Greeter/Boundless", 17, &m, &h, msg, sizeof msg), 0);
  MW_CHECK(h == &h_bound);
  MW_CHECK_INT(mw_router_id(r), 7);
  MW_CHECK(mw_router_methods(r) == g_methods);
  MW_CHECK(mw_router_owner_self(r) == &log);
  MW_CHECK(mw_router_handler(r, m->index) == &h_bound);
  /* a NUL inside the path does not end it: "/rt.Greeter/Bound\0.." is not
   * Bound (heap-allocated at its exact length, so a read past a method's
   * own path would show under the sanitizers) */
  for (size_t extra = 1; extra <= 8; extra++) {
    char *p = malloc(17 + extra);
    memcpy(p, "/rt.Greeter/Bound", 17);
    memset(p + 17, 0, extra);
    MW_CHECK_INT(mw_router_route(r, p, 17 + extra, &m, &h, msg, sizeof msg), -1);
    MW_CHECK(m == NULL);
    free(p);
  }
  mw_router_unref(r);
  MW_CHECK_INT(log.releases, 1);
}

static void test_method_without_handler(void) {
  owner_log log = {0};
  mw_router *r = new_router(&log, 1);
  const mw_method *m;
  mw_handler *h;
  MW_CHECK_INT(route(r, "/rt.Greeter/Unbound", &m, &h), -1);
  MW_CHECK_STR(msg, "method /rt.Greeter/Unbound has no handler");
  /* the method is known: set; the handler is not */
  MW_CHECK(m != NULL && strcmp(m->path, "/rt.Greeter/Unbound") == 0);
  MW_CHECK(h == NULL);
  /* a whole service without any binding */
  MW_CHECK_INT(route(r, "/rt.Other/Ping", &m, &h), -1);
  MW_CHECK_STR(msg, "method /rt.Other/Ping has no handler");
  /* unbinding makes a bound method unbound again */
  mw_router_bind(r, mw_methods_find(g_methods, "/rt.Greeter/Bound", 17)->index, NULL);
  MW_CHECK_INT(route(r, "/rt.Greeter/Bound", &m, &h), -1);
  MW_CHECK_STR(msg, "method /rt.Greeter/Bound has no handler");
  mw_router_unref(r);
  MW_CHECK_INT(log.releases, 1);
}

static void test_unknown_service(void) {
  owner_log log = {0};
  mw_router *r = new_router(&log, 1);
  const mw_method *m;
  mw_handler *h;
  MW_CHECK_INT(route(r, "/x.Y/Bound", &m, &h), -1);
  MW_CHECK_STR(msg, "unknown service x.Y");
  MW_CHECK(m == NULL);
  MW_CHECK(h == NULL);
  /* a prefix of a known service's name is another service */
  MW_CHECK_INT(route(r, "/rt.Greet/Bound", &m, &h), -1);
  MW_CHECK_STR(msg, "unknown service rt.Greet");
  MW_CHECK_INT(route(r, "/rt.GreeterX/Bound", &m, &h), -1);
  MW_CHECK_STR(msg, "unknown service rt.GreeterX");
  mw_router_unref(r);
}

static void test_unknown_method(void) {
  owner_log log = {0};
  mw_router *r = new_router(&log, 1);
  const mw_method *m;
  mw_handler *h;
  MW_CHECK_INT(route(r, "/rt.Greeter/Nope", &m, &h), -1);
  MW_CHECK_STR(msg, "unknown method /rt.Greeter/Nope");
  MW_CHECK(m == NULL);
  MW_CHECK(h == NULL);
  /* a method of the other service, asked of this one */
  MW_CHECK_INT(route(r, "/rt.Greeter/Ping", &m, &h), -1);
  MW_CHECK_STR(msg, "unknown method /rt.Greeter/Ping");
  /* names are case-sensitive */
  MW_CHECK_INT(route(r, "/rt.Greeter/bound", &m, &h), -1);
  MW_CHECK_STR(msg, "unknown method /rt.Greeter/bound");
  /* no second slash: no service to name */
  MW_CHECK_INT(route(r, "/rt.Greeter", &m, &h), -1);
  MW_CHECK_STR(msg, "unknown method /rt.Greeter");
  MW_CHECK_INT(route(r, "", &m, &h), -1);
  MW_CHECK_STR(msg, "unknown method ");
  mw_router_unref(r);
}

static void test_message_is_truncated_to_the_buffer(void) {
  owner_log log = {0};
  mw_router *r = new_router(&log, 1);
  const mw_method *m;
  mw_handler *h;
  char small[16];
  memset(small, 'z', sizeof small);
  MW_CHECK_INT(mw_router_route(r, "/x.Y/Z", 6, &m, &h, small, sizeof small), -1);
  MW_CHECK_STR(small, "unknown service");
  mw_router_unref(r);
}

static void test_release_once_at_the_last_unref(void) {
  owner_log log = {0};
  mw_router *r = new_router(&log, 3);
  mw_router_ref(r); /* two live calls on top of the server's reference */
  mw_router_ref(r);
  mw_router_unref(r);
  MW_CHECK_INT(log.releases, 0);
  mw_router_unref(r); /* the server lets go: one call still holds it */
  MW_CHECK_INT(log.releases, 0);
  const mw_method *m;
  mw_handler *h;
  MW_CHECK_INT(route(r, "/rt.Greeter/Bound", &m, &h), 0); /* still usable */
  mw_router_unref(r);
  MW_CHECK_INT(log.releases, 1);
  mw_router_unref(NULL); /* ignored */
  MW_CHECK_INT(log.releases, 1);
}

static void test_release_without_a_release_function(void) {
  mw_router *r = mw_router_new(g_methods, 0, (mw_router_owner){NULL, NULL});
  MW_CHECK(r != NULL);
  mw_router_unref(r); /* frees, tells nobody (the sanitizers check the free) */
}

static void test_empty_method_table(void) {
  mw_schema *s = mw_schema_new();
  mw_methods *t = s ? mw_methods_new(s) : NULL;
  MW_CHECK(t != NULL);
  if (!t) return;
  owner_log log = {0};
  mw_router *r = mw_router_new(t, 0, (mw_router_owner){&log, on_release});
  MW_CHECK(r != NULL);
  const mw_method *m;
  mw_handler *h;
  MW_CHECK_INT(route(r, "/rt.Greeter/Bound", &m, &h), -1);
  MW_CHECK_STR(msg, "unknown service rt.Greeter");
  mw_router_unref(r);
  MW_CHECK_INT(log.releases, 1);
  mw_methods_free(t);
  mw_schema_free(s);
}

static int setup(void) {
  mkdir(MW_TEST_TMP, 0777);
  mkdir(DIR, 0777);
  FILE *f = fopen(DIR "/rt.proto", "wb");
  if (!f) return -1;
  fputs(proto_src, f);
  if (fclose(f) != 0) return -1;
  const char *dirs[] = {DIR};
  mw_diag d = {0};
  mw_schema_input in = {dirs, 1, NULL, 0, NULL, 0};
  g_schema = mw_schema_load(&in, &d);
  for (size_t i = 0; i < d.n; i++) fprintf(stderr, "%s\n", d.msgs[i] ? d.msgs[i] : "?");
  mw_diag_free(&d);
  if (g_schema) g_methods = mw_methods_new(g_schema);
  return g_methods && mw_methods_count(g_methods) == 4 ? 0 : -1;
}

int main(void) {
  if (setup() != 0) {
    fprintf(stderr, "setup failed\n");
    return 1;
  }
  MW_RUN(test_found);
  MW_RUN(test_method_without_handler);
  MW_RUN(test_unknown_service);
  MW_RUN(test_unknown_method);
  MW_RUN(test_message_is_truncated_to_the_buffer);
  MW_RUN(test_release_once_at_the_last_unref);
  MW_RUN(test_release_without_a_release_function);
  MW_RUN(test_empty_method_table);
  mw_methods_free(g_methods);
  mw_schema_free(g_schema);
  return mw_test_done();
}
