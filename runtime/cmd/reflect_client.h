/* The client side of server reflection (grpc.reflection.v1, falling back
 * to v1alpha when the server answers UNIMPLEMENTED): the schema of a
 * server that has no .proto at hand. One bidi stream carries every
 * question of a command; the files asked for are resolved with their
 * imports (file_by_filename) until the set is closed, then loaded into a
 * schema as one FileDescriptorSet (schema/mw_schema.h, mw_schema_add_set).
 *
 * Used by cmd/call.c for call, list and describe. Returns follow one rule:
 * 0 on success; a gRPC status code (1..16) when the server said no (the
 * stream failed, or its error_response: NOT_FOUND for a symbol it does not
 * know); MW_REFLECT_LOCAL when something here failed; err says what. */
#ifndef MW_CMD_REFLECT_CLIENT_H
#define MW_CMD_REFLECT_CLIENT_H

#include <stddef.h>

#include "base/mw_strvec.h"
#include "cmd/rpc.h"
#include "schema/mw_schema.h"

#define MW_REFLECT_LOCAL (-1)

typedef struct mw_reflect mw_reflect;

/* A session over conn with the command's metadata (a server that wants a
 * token for its calls usually wants it for reflection too) and deadline
 * (each exchange, seconds; 0: none). Nothing is sent yet. NULL when out of
 * memory. The pointers must outlive the session. */
mw_reflect *mw_reflect_new(mw_rpc_conn *conn, const mw_rpc_md *md, size_t n_md,
                           double timeout_s);
/* The services the server lists, in its order, appended to names. */
int mw_reflect_services(mw_reflect *r, mw_strvec *names, char *err, size_t errlen);
/* Loads the file that defines symbol (a service, method, message, enum:
 * fully qualified), and every file it imports, into s. */
int mw_reflect_symbol(mw_reflect *r, const char *symbol, mw_schema *s, char *err,
                      size_t errlen);
/* Closes the stream; NULL is fine. */
void mw_reflect_free(mw_reflect *r);

#endif
