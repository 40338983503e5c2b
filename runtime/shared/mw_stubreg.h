/* The stub registry: what the admin API (http/mw_admin.c, /api/...) and
 * the stub engine of every worker (lua/moonwire/stub.lua through
 * lua/l_stub.c) share. It holds the stubs added at run time, as the JSON
 * text each was posted as, and the history of the calls the stub engine
 * answered, bounded (MW_STUBREG_HISTORY entries; per-method counts are kept
 * apart, so `verify` stays exact however long a test runs).
 *
 * Process-wide, one mutex; any thread. Workers see added stubs by the
 * version number, an atomic read per call: a changed version makes a
 * worker re-read the list (mw_stubreg_each) and compile it. The registry
 * outlives generations (a reload keeps stubs added at run time) and is
 * freed by mw_stubreg_free at the end of serve. */
#ifndef MW_STUBREG_H
#define MW_STUBREG_H

#include <stddef.h>
#include <stdint.h>

#define MW_STUBREG_HISTORY 1000
#define MW_STUBREG_MAX_STUBS 10000
#define MW_STUBREG_ID_MAX 64

/* Bumped by every change of the stub list (never 0 once something
 * changed). Any thread; called by the stub engine on every call. */
uint64_t mw_stubreg_version(void);

/* Adds one stub (the JSON text of an object) under id (NULL or "": a new
 * UUID v4 is made); the id used is copied to id_out
 * (MW_STUBREG_ID_MAX bytes). A stub with the same id is replaced. Returns
 * 0, or -1 with *why set (too many stubs, an id too long, out of memory).
 * Called by the admin's POST /api/stubs. */
int mw_stubreg_add(const char *json, size_t len, const char *id, char *id_out,
                   const char **why);
/* Removes the stub of id; returns 1 when there was one. DELETE
 * /api/stubs/{id}. */
int mw_stubreg_delete(const char *id, size_t len);
/* Removes every stub added at run time. DELETE /api/stubs. */
void mw_stubreg_clear(void);
/* Calls fn for each stub, in the order added, under the registry's lock
 * (fn must not call back into the registry), with the serial number of
 * the add that stored it (unique for the process: a stub replaced, or
 * deleted and added again, is a new one, with its options.times count
 * afresh); returns the version the list had. The stub engine's re-read. */
uint64_t mw_stubreg_each(void (*fn)(void *ud, const char *id, const char *json, size_t len,
                                    uint64_t serial),
                         void *ud);

/* One call the stub engine answered: the service's full name, the method,
 * the id (or file and number) of the stub that answered ("" when none did),
 * the request as JSON text and the code it ended with. Called by the stub
 * engine when the admin listener is on. */
void mw_stubreg_record(const char *service, const char *method, const char *stub,
                       const char *request_json, size_t len, int code);
/* The calls recorded with one method (service full or by its last name
 * component, as gripmock accepts), since the start or the last
 * mw_stubreg_clear_history. POST /api/verify. */
uint64_t mw_stubreg_count(const char *service, const char *method);
/* Forgets the history and the counts. DELETE /api/history. */
void mw_stubreg_clear_history(void);

/* The JSON the admin serves (malloc'd, the caller's; NULL when out of
 * memory): the stubs as [{"id": ..., "stub": {...}}] (GET /api/stubs) and
 * the history as [{"service":, "method":, "stub":, "request":, "code":,
 * "time":}] oldest first (GET /api/history). */
char *mw_stubreg_stubs_json(size_t *len);
/* One stub as {"id": ..., "stub": {...}} (GET /api/stubs/{id}); NULL when
 * no stub has that id (*len 0) or out of memory (*len 1). */
char *mw_stubreg_stub_json(const char *id, size_t idlen, size_t *len);
char *mw_stubreg_history_json(size_t *len);

/* Frees everything; safe twice. */
void mw_stubreg_free(void);

#endif
