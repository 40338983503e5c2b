/* Rich error details: a status object's code, message and details <->
 * a serialized google.rpc.Status, the value of the grpc-status-details-bin
 * trailer. The details are an array of tables, each a google.protobuf.Any as
 * the codec maps it: {["@type"] = "type.googleapis.com/google.rpc.ErrorInfo",
 * <fields of that message>}, packed and unpacked by the codec
 * (codec/mw_codec.h) with the types of the schema.
 *
 * Which schema: the generation's, in a state the VM made; elsewhere (a plain
 * lua5.4 with moonwire.core, a test) a process-wide one holding only the
 * google.rpc types, made on first use and owned by this file (freed at
 * exit). Every generation's schema has the google.rpc types
 * (schema/mw_schema.h, mw_schema_add_rpc_types). */
#ifndef MW_DETAILS_H
#define MW_DETAILS_H

#include <stddef.h>

#include <lua.h>

#include "upb/arena.h"
#include "upb/def.h"

/* The pool details are encoded and decoded with for L (see above); NULL only
 * when the process-wide one could not be made (out of memory). */
const upb_DefPool *mw_details_pool(lua_State *L);

/* code, msg and the details array at details_idx -> a serialized
 * google.rpc.Status in arena a (*len set). Returns the bytes, or NULL with
 * err filled: a detail the codec cannot encode ("field 'details[2]...': ..."
 * with the codec's path, an unknown "@type"), or a pool without
 * google.rpc.Status. The stack is left as it was. A Lua memory error can
 * unwind through it: call it protected. */
const char *mw_details_encode(lua_State *L, int code, const char *msg, int details_idx,
                              const upb_DefPool *pool, upb_Arena *a, size_t *len,
                              char *err, size_t errlen);

/* A serialized google.rpc.Status -> a status object pushed on L
 * ({code =, message =, details = array}, the moonwire.status metatable),
 * each detail unpacked by its "@type" when the pool knows the type, else
 * {["@type"] = url, ["@value"] = bytes}. Returns 0, or -1 with err filled
 * and nothing pushed (bytes that are not a google.rpc.Status). a is scratch
 * space for the call. */
int mw_details_decode_push(lua_State *L, const char *bin, size_t len,
                           const upb_DefPool *pool, upb_Arena *a, char *err,
                           size_t errlen);

#endif
