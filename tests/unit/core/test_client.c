/* The outbound client's policy and its blocking call: the allow-list's
 * patterns, the target forms, and a unary call outside any worker against
 * a port where nothing listens (UNAVAILABLE before its deadline). */
#include "core/mw_client.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "base/mw_status.h"
#include "base/mw_timer.h"
#include "mw_test.h"

static int allowed(const char *t) {
  char err[256];
  return mw_client_allowed(t, err, sizeof err);
}

static void test_nothing_allowed_by_default(void) {
  MW_CHECK_INT(mw_client_configure(NULL), 0);
  char err[256];
  MW_CHECK_INT(mw_client_allowed("127.0.0.1:50051", err, sizeof err), 0);
  MW_CHECK_CONTAINS(err, "not in client.allow");
  mw_client_shutdown();
}

static void test_patterns(void) {
  const char *allow[] = {"127.0.0.1:50051", "inventory:*", "unix:/run/x.sock", "[::1]:443"};
  mw_client_policy p = {.allow = allow, .n_allow = 4};
  MW_CHECK_INT(mw_client_configure(&p), 0);
  MW_CHECK_INT(allowed("127.0.0.1:50051"), 1);
  MW_CHECK_INT(allowed("127.0.0.1:50052"), 0);
  MW_CHECK_INT(allowed("inventory:1"), 1);
  MW_CHECK_INT(allowed("inventory:65535"), 1);
  MW_CHECK_INT(allowed("inventoryx:1"), 0);
  MW_CHECK_INT(allowed("xinventory:1"), 0);
  MW_CHECK_INT(allowed("unix:/run/x.sock"), 1);
  MW_CHECK_INT(allowed("unix:/run/y.sock"), 0);
  MW_CHECK_INT(allowed("[::1]:443"), 1);
  MW_CHECK_INT(allowed("localhost:50051"), 0); /* matched as written */
  mw_client_shutdown();
  mw_client_shutdown(); /* twice is fine */
}

static void test_target_forms(void) {
  const char *allow[] = {"*"};
  mw_client_policy p = {.allow = allow, .n_allow = 1};
  MW_CHECK_INT(mw_client_configure(&p), 0);
  MW_CHECK_INT(allowed("anything:1"), 1);
  static const char *bad[] = {"dns:///x:1", "xds:///svc", "host", "host:", ":80",
                              "h:port", "h:123456", "a/b:1", "a:b:1", "unix:", "[::1]80"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char err[256];
    MW_CHECK_INT(mw_client_allowed(bad[i], err, sizeof err), 0);
    MW_CHECK_CONTAINS(err, "is not a target");
  }
  mw_client_shutdown();
}

/* A loopback port nothing listens on. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bind(fd, (struct sockaddr *)&a, sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

static void test_blocking_call(void) {
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", closed_port());
  const char *allow[] = {target};
  mw_client_policy p = {.allow = allow, .n_allow = 1};
  MW_CHECK_INT(mw_client_configure(&p), 0);
  mw_channel_opts o = {.target = target};
  mw_ccall_start_args a = {.channel = &o, .path = "/x.Y/Z", .request = "", .unary = 1};
  char err[256];
  /* No deadline: refused, there is no parent to take one from. */
  MW_CHECK(mw_ccall_unary_blocking(&a, err, sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "needs a timeout");
  a.deadline = mw_wall_now() + 5;
  double t0 = mw_now();
  mw_ccall *c = mw_ccall_unary_blocking(&a, err, sizeof err);
  MW_CHECK(c != NULL);
  if (c) {
    MW_CHECK_INT(mw_ccall_code(c), MW_STATUS_UNAVAILABLE);
    const char *d;
    size_t dl;
    MW_CHECK_INT(mw_ccall_response(c, &d, &dl), 0);
    mw_ccall_release(c);
  }
  MW_CHECK(mw_now() - t0 < 4); /* failed fast, not at the deadline */
  /* Not in a worker: the waiting form is refused. */
  MW_CHECK(mw_ccall_start(&a, err, sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "handlers only");
  mw_client_shutdown();
}

int main(void) {
  MW_RUN(test_nothing_allowed_by_default);
  MW_RUN(test_patterns);
  MW_RUN(test_target_forms);
  MW_RUN(test_blocking_call);
  return mw_test_done();
}
