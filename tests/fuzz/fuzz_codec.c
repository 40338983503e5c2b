/* The codec over arbitrary bytes: decode (bytes -> Lua table) must never
 * crash, and a table that decodes must encode, and its bytes decode to an
 * equal table. The schema is fuzz.proto (every kind of field); the first
 * input byte picks the message type. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "base/mw_fs.h"
#include "codec/mw_codec.h"
#include "schema/mw_schema.h"

static const char *const types[] = {"mwfuzz.Node", "mwfuzz.Scalars",
                                    "mwfuzz.Repeated", "mwfuzz.Maps",
                                    "google.protobuf.Any"};
#define N_TYPES (sizeof types / sizeof types[0])

static mw_schema *schema; /* for the process: defs point into it */
static lua_State *L;
static const upb_MessageDef *defs[N_TYPES];

/* Deep equality of decoded tables: NaN equals NaN (a float field can hold
 * it), and integers stay integers (a float 1.0 is not the integer 1). */
static const char deq_src[] =
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return false end\n"
    "    return a == b or (a ~= a and b ~= b)\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "local function show(v, depth)\n"
    "  if type(v) ~= 'table' then\n"
    "    return type(v) == 'string' and string.format('%q', v) or math.type(v) == 'float' and string.format('%a', v) or tostring(v)\n"
    "  end\n"
    "  if depth > 20 then return '{...}' end\n"
    "  local keys = {}\n"
    "  for k in pairs(v) do keys[#keys + 1] = k end\n"
    "  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)\n"
    "  local out = {}\n"
    "  for _, k in ipairs(keys) do out[#out + 1] = '[' .. show(k, depth + 1) .. ']=' .. show(v[k], depth + 1) end\n"
    "  return '{' .. table.concat(out, ', ') .. '}'\n"
    "end\n"
    "return same, show\n";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  size_t len;
  char *pb;
  if (mw_fs_read(MW_FUZZ_PB, 1 << 20, &pb, &len, NULL) != MW_FS_OK) {
    fprintf(stderr, "fuzz_codec: cannot read %s\n", MW_FUZZ_PB);
    abort();
  }
  schema = mw_schema_new();
  mw_diag d = {0};
  if (!schema || mw_schema_add_set(schema, pb, len, MW_FUZZ_PB, &d) != 0) abort();
  free(pb);
  for (size_t i = 0; i < N_TYPES; i++) {
    defs[i] = upb_DefPool_FindMessageByName(mw_schema_pool(schema), types[i]);
    if (!defs[i]) abort();
  }
  L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_loadstring(L, deq_src) != 0) abort();
  lua_call(L, 0, 2);
  lua_setglobal(L, "show");
  lua_setglobal(L, "same");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const upb_MessageDef *m = defs[data[0] % N_TYPES];
  const char *buf = (const char *)data + 1;
  size_t len = size - 1;
  char err[MW_CODEC_ERRLEN];
  upb_Arena *a = upb_Arena_New();
  lua_settop(L, 0);
  if (mw_codec_decode_push(L, buf, len, m, a, err, sizeof err) == 0) {
    if (lua_gettop(L) != 1 || !lua_istable(L, 1)) abort();
    size_t len2;
    char *buf2 = mw_codec_encode(L, 1, m, a, &len2, err, sizeof err);
    if (!buf2) {
      fprintf(stderr, "decoded, but does not encode: %s\n", err);
      abort();
    }
    if (mw_codec_decode_push(L, buf2, len2, m, a, err, sizeof err) != 0) {
      fprintf(stderr, "re-encoded bytes do not decode: %s\n", err);
      abort();
    }
    lua_getglobal(L, "same");
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 1);
    if (!lua_toboolean(L, -1)) {
      /* Both tables, for the report. */
      for (int i = 1; i <= 2; i++) {
        lua_getglobal(L, "show");
        lua_pushvalue(L, i);
        lua_pushinteger(L, 0);
        lua_call(L, 2, 1);
        fprintf(stderr, "%s: %s\n", i == 1 ? "decoded" : "after the round trip",
                lua_tostring(L, -1));
        lua_pop(L, 1);
      }
      fprintf(stderr, "the table changed in the round trip\n");
      abort();
    }
  } else if (lua_gettop(L) != 0) {
    abort();
  }
  lua_settop(L, 0);
  upb_Arena_Free(a);
  return 0;
}
