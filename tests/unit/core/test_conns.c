/* The connection census (core/mw_conns.h) over real loopback sockets: it
 * counts the accepted connections on its ports only, and cuts the one that
 * floods, leaving idle ones and other ports' alone. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/mw_conns.h"
#include "mw_test.h"

static int listener(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 16) ||
      getsockname(fd, (struct sockaddr *)&a, &len))
    abort();
  *port = ntohs(a.sin_port);
  return fd;
}

static int dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) abort();
  return fd;
}

/* Whether the peer of fd has shut the connection: a read sees EOF or a
 * reset within a second. */
static int peer_closed(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 1000) != 1) return 0;
  char b[64];
  ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void test_census_and_cut(void) {
  int port, other_port;
  int lfd = listener(&port), other = listener(&other_port);
  int idle_c = dial(port), flood_c = dial(port), elsewhere_c = dial(other_port);
  int idle_s = accept(lfd, NULL, NULL), flood_s = accept(lfd, NULL, NULL);
  int elsewhere_s = accept(other, NULL, NULL);
  MW_CHECK(idle_s >= 0 && flood_s >= 0 && elsewhere_s >= 0);

  mw_conns *c = mw_conns_new(&port, 1);
  MW_CHECK(c != NULL);
  /* The listening socket and the other port's connection are not counted. */
  MW_CHECK_INT(mw_conns_sample(c), 2);

  /* Nobody sent anything since the sample: nothing to cut. */
  mw_conn_cut cut;
  MW_CHECK_INT(mw_conns_cut_busiest(c, 0, &cut), 0);

  /* A client that talks a little is under the flood's mark: not cut. */
  static char junk[200000];
  MW_CHECK_INT(send(idle_c, junk, 1000, MSG_DONTWAIT), 1000);
  usleep(50000);
  MW_CHECK_INT(mw_conns_cut_busiest(c, 64 * 1024, &cut), 0);
  MW_CHECK(!peer_closed(idle_c));
  MW_CHECK_INT(recv(idle_s, junk, sizeof junk, MSG_DONTWAIT), 1000);

  /* One client floods: what it sent waits unread (the server never reads,
   * as core does not keep up with a flood), the others send a little. */
  ssize_t sent = send(flood_c, junk, sizeof junk, MSG_DONTWAIT);
  MW_CHECK(sent > 100000);
  MW_CHECK_INT(send(elsewhere_c, junk, 50000, MSG_DONTWAIT), 50000);
  usleep(50000);
  MW_CHECK_INT(mw_conns_cut_busiest(c, 64 * 1024, &cut), 1);
  struct sockaddr_in me;
  socklen_t len = sizeof me;
  char want[64];
  getsockname(flood_c, (struct sockaddr *)&me, &len);
  snprintf(want, sizeof want, "127.0.0.1:%d", ntohs(me.sin_port));
  MW_CHECK_STR(cut.peer, want);
  MW_CHECK((int64_t)cut.bytes >= 100000);
  MW_CHECK(peer_closed(flood_c));
  MW_CHECK(!peer_closed(idle_c));
  MW_CHECK(!peer_closed(elsewhere_c));

  /* A cut connection is on its way out: it is neither counted nor cut
   * again, though its descriptor is still open (it is core's to close). */
  MW_CHECK_INT(mw_conns_sample(c), 1);
  MW_CHECK_INT(mw_conns_cut_busiest(c, 0, &cut), 0);

  mw_conns_free(c);
  mw_conns_free(NULL);
  int fds[] = {lfd, other, idle_c, flood_c, elsewhere_c, idle_s, flood_s, elsewhere_s};
  for (size_t i = 0; i < sizeof fds / sizeof *fds; i++) close(fds[i]);
}

int main(void) {
  MW_RUN(test_census_and_cut);
  return mw_test_done();
}
