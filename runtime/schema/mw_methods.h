/* The method table of a schema: every method of the services the inputs
 * define, with its HTTP/2 path, kind and message types, found by path in
 * one hash probe. Built once per generation; read by the router, the
 * backends and the commands. */
#ifndef MW_METHODS_H
#define MW_METHODS_H

#include <stddef.h>

#include "schema/mw_schema.h"

typedef enum mw_kind {
  MW_KIND_UNARY = 0,
  MW_KIND_SERVER_STREAMING = 1,
  MW_KIND_CLIENT_STREAMING = 2,
  MW_KIND_BIDI_STREAMING = 3,
} mw_kind;

/* "unary", "server-streaming", "client-streaming", "bidi-streaming". */
const char *mw_kind_name(mw_kind k);

typedef struct mw_method {
  char *path; /* "/pkg.Service/Method" (owned by the table) */
  size_t path_len;
  const char *service; /* full name of the service (the schema's) */
  const char *name;    /* the method's own name (the schema's) */
  const upb_MethodDef *def;
  const upb_MessageDef *input, *output;
  mw_kind kind;
  size_t index; /* position in the table */
} mw_method;

typedef struct mw_methods mw_methods;

/* The methods of every service of s, in the schema's service order; NULL
 * when out of memory. The table borrows s, which must outlive it. */
mw_methods *mw_methods_new(const mw_schema *s);
void mw_methods_free(mw_methods *t);

size_t mw_methods_count(const mw_methods *t);
const mw_method *mw_methods_at(const mw_methods *t, size_t i);
/* The method of an HTTP/2 path (not NUL-terminated); NULL when none. */
const mw_method *mw_methods_find(const mw_methods *t, const char *path, size_t len);
/* Whether the schema defines the service (full name, not NUL-terminated). */
int mw_methods_has_service(const mw_methods *t, const char *name, size_t len);
const mw_schema *mw_methods_schema(const mw_methods *t);

#endif
