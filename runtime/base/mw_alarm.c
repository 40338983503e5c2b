/* Per-thread alarms and the watchdog thread that fires them.
 *
 *   armed thread                         watchdog (one per process)
 *   due := T (seq_cst)                   planned := 0 while it looks
 *   if T < planned: wake the watchdog    for each alarm: due <= now -> CAS due
 *   ... runs ...                           to 0, pthread_kill(thread, SIGURG)
 *   due := 0                             planned := the earliest due (or a tick
 *                                          while armings keep coming), look
 *                                          again, then sleep until planned
 *
 * The second look after planned is stored pairs with the armed thread's
 * load of planned after its store of due: either the watchdog sees the new
 * due, or the thread sees the new planned and wakes it (under the mutex the
 * watchdog holds until it sleeps, so the wake cannot fall in between).
 *
 * While armings keep coming the watchdog wakes every MW_ALARM_TICK whatever
 * the dues, so that an arming for longer than a tick (a handler's 5 ms
 * time slice) finds it already planned earlier and makes no system call;
 * it sleeps until woken once a whole tick passed with no arming.
 *
 * SIGURG: its default action is to do nothing, so one that arrives before
 * the handler is installed, or from elsewhere, harms nothing, and nothing
 * in this process uses out-of-band socket data. */
#include "base/mw_alarm.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define MW_ALARM_SIGNAL SIGURG
#define MW_ALARM_TICK_NS 2000000ull /* 2 ms */

struct mw_alarm {
  _Atomic uint64_t due; /* monotonic ns; 0: disarmed */
  _Atomic uint64_t seq; /* armings so far (written by the owner only) */
  uint64_t seen;        /* the watchdog's: seq at its last look */
  pthread_t thread;
  struct mw_alarm *next, *prev; /* the watchdog's list, under wd.mu */
};

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  mw_alarm *list;
  _Atomic uint64_t planned; /* when the watchdog wakes (ns); 0 while it looks;
                               UINT64_MAX: only when woken */
  int started, failed;
  void (*fn)(void);
  pthread_key_t key;
} wd = {.mu = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  void (*fn)(void) = wd.fn;
  if (fn) fn();
  errno = saved;
}

/* The thread's alarm goes with the thread: unlinked before the thread is
 * gone, so the watchdog never signals a thread that no longer exists. */
static void unregister(void *p) {
  mw_alarm *a = p;
  pthread_mutex_lock(&wd.mu);
  if (a->prev) a->prev->next = a->next;
  else wd.list = a->next;
  if (a->next) a->next->prev = a->prev;
  pthread_mutex_unlock(&wd.mu);
  free(a);
}

static void init_once_fn(void) {
  pthread_condattr_t ca;
  if (pthread_condattr_init(&ca) != 0 ||
      pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
      pthread_cond_init(&wd.cv, &ca) != 0) {
    init_rc = -1;
    return;
  }
  pthread_condattr_destroy(&ca);
  if (pthread_key_create(&wd.key, unregister) != 0) {
    init_rc = -1;
    return;
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(MW_ALARM_SIGNAL, &sa, NULL) != 0) init_rc = -1;
}

int mw_alarm_init(void (*fn)(void)) {
  if (!wd.fn) wd.fn = fn;
  pthread_once(&init_once, init_once_fn);
  return init_rc;
}

static void *watchdog(void *arg) {
  (void)arg;
  pthread_mutex_lock(&wd.mu);
  for (;;) {
    uint64_t now = now_ns(), next = UINT64_MAX;
    int active = 0;
    for (mw_alarm *a = wd.list; a; a = a->next) {
      uint64_t d = atomic_load(&a->due);
      if (d && d <= now) {
        /* Fires once: a new arming meanwhile fails the exchange and is
         * looked at on the next pass. */
        if (atomic_compare_exchange_strong(&a->due, &d, 0))
          pthread_kill(a->thread, MW_ALARM_SIGNAL);
        else
          next = now;
      } else if (d && d < next) {
        next = d;
      }
      uint64_t s = atomic_load_explicit(&a->seq, memory_order_relaxed);
      if (s != a->seen) {
        a->seen = s;
        active = 1;
      }
    }
    if (next == now) continue;
    if (active && next > now + MW_ALARM_TICK_NS) next = now + MW_ALARM_TICK_NS;
    atomic_store(&wd.planned, next);
    int again = 0;
    for (mw_alarm *a = wd.list; a && !again; a = a->next) {
      uint64_t d = atomic_load(&a->due);
      again = d && d < next;
    }
    if (!again) {
      if (next == UINT64_MAX) {
        pthread_cond_wait(&wd.cv, &wd.mu);
      } else {
        struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
                              .tv_nsec = (long)(next % 1000000000ull)};
        pthread_cond_timedwait(&wd.cv, &wd.mu, &ts);
      }
    }
    atomic_store(&wd.planned, 0);
  }
  return NULL;
}

mw_alarm *mw_alarm_self(void) {
  static _Thread_local mw_alarm *self;
  static _Thread_local int tried;
  if (self || tried) return self;
  tried = 1;
  if (!wd.fn || init_rc != 0) return NULL;
  mw_alarm *a = calloc(1, sizeof *a);
  if (!a) {
    tried = 0; /* try again on a later call */
    return NULL;
  }
  a->thread = pthread_self();
  pthread_mutex_lock(&wd.mu);
  if (!wd.started && !wd.failed) {
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 64 * 1024);
    /* The watchdog takes no signal of its own: the alarm's goes to the
     * armed threads only. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&t, &at, watchdog, NULL) == 0) wd.started = 1;
    else wd.failed = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
  }
  if (!wd.started || pthread_setspecific(wd.key, a) != 0) {
    pthread_mutex_unlock(&wd.mu);
    free(a);
    return NULL;
  }
  a->next = wd.list;
  if (wd.list) wd.list->prev = a;
  wd.list = a;
  pthread_mutex_unlock(&wd.mu);
  self = a;
  return a;
}

double mw_alarm_arm(mw_alarm *a, double due) {
  uint64_t ns = 0;
  if (due > 0) {
    ns = (uint64_t)(due * 1e9);
    if (ns == 0) ns = 1;
  }
  uint64_t old = atomic_exchange(&a->due, ns);
  if (ns) {
    atomic_store_explicit(&a->seq, atomic_load_explicit(&a->seq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (ns < atomic_load(&wd.planned)) {
      pthread_mutex_lock(&wd.mu);
      pthread_cond_signal(&wd.cv);
      pthread_mutex_unlock(&wd.mu);
    }
  }
  return (double)old * 1e-9;
}
