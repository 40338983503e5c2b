/* Codec, the reflection pair: upb message <-> Lua table through upb's
 * reflection API, with the mapping, checks and errors of codec/mw_codec.h.
 * Not in the runtime (it is library mwcodec_reflect, which only the codec's
 * unit test links): upb's own decoder and encoder work on these messages,
 * so the test uses this pair as the oracle for the wire functions. */
#ifndef MW_CODEC_REFLECT_H
#define MW_CODEC_REFLECT_H

#include <stddef.h>

#include <lua.h>

#include "codec/mw_codec.h"
#include "upb/arena.h"
#include "upb/def.h"
#include "upb/msg.h"

/* Pushes the Lua table for msg. Returns 0, or -1 with err filled (e.g.
 * invalid UTF-8 in a string field) and nothing pushed. Unpacking an Any
 * uses a temporary arena of its own. */
int mw_codec_push_message(lua_State *L, const upb_Message *msg,
                          const upb_MessageDef *m, char *err, size_t errlen);

/* Builds a new message of type m in arena a from the Lua table at index idx.
 * Returns NULL with err filled on any mismatch. Strings are copied into a,
 * so the message does not depend on the table staying alive. */
upb_Message *mw_codec_to_message(lua_State *L, int idx,
                                 const upb_MessageDef *m, upb_Arena *a,
                                 char *err, size_t errlen);

#endif
