/* The process's health board: the statuses grpc.health.v1 reports, shared
 * by every worker and every generation, so that a reload or a set on one
 * worker reaches Watch streams on all of them. Mechanism only: which
 * status a name has (draining over an explicit set over "served") is
 * decided in Lua (lua/moonwire/health.lua), and the service itself is
 * services/health.lua.
 *
 * It holds the names of the services the current generation serves, the
 * statuses set with mw.health.set, and whether the server is draining;
 * every change bumps its notice (lua/mw_notice.h). All functions are
 * thread-safe. */
#ifndef MW_HEALTH_H
#define MW_HEALTH_H

#include <stddef.h>

#include "lua/mw_notice.h"

/* grpc.health.v1.HealthCheckResponse.ServingStatus */
enum {
  MW_HEALTH_UNKNOWN = 0,
  MW_HEALTH_SERVING = 1,
  MW_HEALTH_NOT_SERVING = 2,
  MW_HEALTH_SERVICE_UNKNOWN = 3,
};

/* The services the generation now current serves (copied). */
int mw_health_set_served(const char *const *names, size_t n);
/* An explicit status for name; status < 0 removes it. 0 or -1 (memory). */
int mw_health_set(const char *name, size_t len, int status);
/* What the board knows of name: its explicit status (-1: none), whether
 * the current generation serves it, and the notice's version then. */
typedef struct mw_health_entry {
  int explicit_status;
  int served;
  int draining; /* the drain's stage */
  unsigned long version;
} mw_health_entry;
void mw_health_lookup(const char *name, size_t len, mw_health_entry *out);
/* The drain's stages: MW_HEALTH_DRAINING from SIGTERM on (everything
 * reports NOT_SERVING), MW_HEALTH_CLOSING once connections are told to go
 * away (Watch streams end). Stages only move forward. */
enum { MW_HEALTH_RUNNING = 0, MW_HEALTH_DRAINING = 1, MW_HEALTH_CLOSING = 2 };
void mw_health_drain(int stage);
int mw_health_draining(void);
/* The board's notice, for waits. */
mw_notice *mw_health_notice(void);
/* Forgets everything (no server may run); safe twice. */
void mw_health_free(void);

#endif
