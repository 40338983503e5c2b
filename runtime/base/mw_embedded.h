/* Files compiled into the binary by tools/mw_embed.c (the Lua library,
 * the project's protos): one table per set, generated at build time. */
#ifndef MW_EMBEDDED_H
#define MW_EMBEDDED_H

#include <stddef.h>

typedef struct mw_embedded {
  const char *module; /* the path as a dotted name: "moonwire.service" */
  const char *path;   /* relative to the set's root: "moonwire/service.lua" */
  const char *data;   /* the file's bytes, NUL-terminated after len */
  size_t len;
} mw_embedded;

#endif
