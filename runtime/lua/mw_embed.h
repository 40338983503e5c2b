/* The Lua library (the files of lua/moonwire/), compiled into the binary by
 * tools/mw_embed.c and loaded through package.preload, so an installed
 * binary needs nothing else on disk. Chunk names keep the library's file
 * names ("@moonwire/service.lua"), so tracebacks still name the file. */
#ifndef MW_EMBED_H
#define MW_EMBED_H

#include <lua.h>

#include "base/mw_embedded.h"

/* The library's files, relative to lua/ (generated: build/gen/). */
extern const mw_embedded mw_lua_library[];
extern const size_t mw_lua_library_count;

/* The directory that replaces the embedded copies: $MOONWIRE_LUA_DIR, for
 * working on the library without rebuilding; NULL when not set. */
const char *mw_embed_override(void);

/* Registers a package.preload loader for every embedded module in L. With
 * the override set, the loaders read DIR/<path> instead (chunk names are
 * then the files' paths). */
void mw_embed_install(lua_State *L);

#endif
