/* What the stub engine (lua/moonwire/stub.lua) needs of C: the stub files
 * of the service directories, the shape of a message (its fields, for
 * turning proto3 JSON forms into the codec's tables and for --stub-all's
 * default replies), POSIX regular expressions for `matches`, and the use
 * counters of `options.times`, shared by every worker of the process.
 *
 * Matching, ranking and replies are policy and live in Lua; only what Lua
 * cannot do (regex, a counter every worker sees, the descriptors) is here. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/mw_fs.h"
#include "base/mw_strvec.h"
#include "base/mw_util.h"
#include "lua/l_api.h"
#include "lua/mw_lstate.h"
#include "shared/mw_stubreg.h"

#define MW_MT_REGEX "moonwire.regex"
/* glibc's regexec backtracks on some patterns: the pattern and the text a
 * stub matches against are bounded so that one call stays cheap. */
#define MW_REGEX_MAX_PATTERN 1024
#define MW_REGEX_MAX_SUBJECT (64 * 1024)

/* --- stub files ---------------------------------------------------------------- */

static int stub_name(const char *name) {
  static const char *const sfx[] = {".stubs.yaml", ".stubs.yml", ".stubs.json"};
  for (size_t i = 0; i < 3; i++)
    if (mw_has_suffix(name, sfx[i])) return 1;
  return 0;
}

static int data_name(const char *name) {
  return mw_has_suffix(name, ".yaml") || mw_has_suffix(name, ".yml") ||
         mw_has_suffix(name, ".json");
}

/* core.stub_files() -> the stub files of the service directories: each
 * directory's *.stubs.yaml|yml|json, then every .yaml, .yml or .json file
 * directly in its stubs/ folder, in name order; and whether some service
 * directory has a stubs/ folder (an empty one still turns stub mode on).
 * Only while the scripts are bound (the config is at hand then); an empty
 * array otherwise. */
static int l_stub_files(lua_State *L) {
  mw_lstate *st = mw_lstate_of(L);
  lua_newtable(L);
  int has_dir = 0;
  if (!st || !st->cfg) {
    lua_pushboolean(L, 0);
    return 2;
  }
  lua_Integer k = 1;
  for (size_t i = 0; i < st->cfg->services.n; i++) {
    const char *dir = st->cfg->services.v[i];
    mw_strvec paths = {0};
    if (mw_fs_list(dir, NULL, &paths, NULL) == 0) {
      for (size_t j = 0; j < paths.n; j++) {
        const char *slash = strrchr(paths.v[j], '/');
        if (!stub_name(slash ? slash + 1 : paths.v[j])) continue;
        lua_pushstring(L, paths.v[j]);
        lua_rawseti(L, -2, k++);
      }
    }
    mw_strvec_free(&paths);
    char *sub = mw_fs_join_norm(dir, "stubs");
    if (!sub) return luaL_error(L, "out of memory");
    mw_strvec more = {0};
    if (mw_fs_list(sub, NULL, &more, NULL) == 0) {
      has_dir = 1;
      for (size_t j = 0; j < more.n; j++) {
        if (!data_name(more.v[j])) continue;
        lua_pushstring(L, more.v[j]);
        lua_rawseti(L, -2, k++);
      }
    }
    mw_strvec_free(&more);
    free(sub);
  }
  lua_pushboolean(L, has_dir);
  return 2;
}

/* core.stub_all() -> whether `serve --stub-all` asked every method without
 * a handler or stub to answer a default message. Bind time only. */
static int l_stub_all(lua_State *L) {
  mw_lstate *st = mw_lstate_of(L);
  lua_pushboolean(L, st && st->cfg && st->cfg->stub_all);
  return 1;
}

/* --- message shapes ------------------------------------------------------------ */

static const char *type_name(const upb_FieldDef *f) {
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool: return "bool";
    case kUpb_CType_Float: return "float";
    case kUpb_CType_Double: return "double";
    case kUpb_CType_Int32: return "int32";
    case kUpb_CType_UInt32: return "uint32";
    case kUpb_CType_Int64: return "int64";
    case kUpb_CType_UInt64: return "uint64";
    case kUpb_CType_Enum: return "enum";
    case kUpb_CType_String: return "string";
    case kUpb_CType_Bytes: return "bytes";
    case kUpb_CType_Message: return "message";
  }
  return "?";
}

/* Pushes {name=, json=, type=, repeated=, map=, message=, enum={names},
 * oneof=} for f. */
static void push_field(lua_State *L, const upb_FieldDef *f) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, upb_FieldDef_Name(f));
  lua_setfield(L, -2, "name");
  lua_pushstring(L, upb_FieldDef_JsonName(f));
  lua_setfield(L, -2, "json");
  lua_pushstring(L, type_name(f));
  lua_setfield(L, -2, "type");
  lua_pushboolean(L, upb_FieldDef_IsRepeated(f) && !upb_FieldDef_IsMap(f));
  lua_setfield(L, -2, "repeated");
  if (upb_FieldDef_IsMap(f)) {
    const upb_MessageDef *entry = upb_FieldDef_MessageSubDef(f);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "map");
    push_field(L, upb_MessageDef_FindFieldByNumber(entry, 1));
    lua_setfield(L, -2, "key");
    push_field(L, upb_MessageDef_FindFieldByNumber(entry, 2));
    lua_setfield(L, -2, "value");
  } else if (upb_FieldDef_CType(f) == kUpb_CType_Message) {
    lua_pushstring(L, upb_MessageDef_FullName(upb_FieldDef_MessageSubDef(f)));
    lua_setfield(L, -2, "message");
  } else if (upb_FieldDef_CType(f) == kUpb_CType_Enum) {
    const upb_EnumDef *e = upb_FieldDef_EnumSubDef(f);
    int n = upb_EnumDef_ValueCount(e);
    lua_createtable(L, n, n);
    for (int i = 0; i < n; i++) {
      const upb_EnumValueDef *v = upb_EnumDef_Value(e, i);
      lua_pushstring(L, upb_EnumValueDef_Name(v));
      lua_rawseti(L, -2, i + 1);
      lua_pushstring(L, upb_EnumValueDef_Name(v));
      lua_rawseti(L, -2, -(lua_Integer)upb_EnumValueDef_Number(v) - 1);
    }
    lua_setfield(L, -2, "enum");
  }
  const upb_OneofDef *o = upb_FieldDef_RealContainingOneof(f);
  if (o) {
    lua_pushstring(L, upb_OneofDef_Name(o));
    lua_setfield(L, -2, "oneof");
  }
}

/* core.message_shape(full_name) -> {name=, fields = {field, ...}} in
 * declaration order (each as push_field says; an enum's `enum` table has
 * the names as an array and, at key -number-1, the name of each number),
 * or nil when the schema has no such message. */
static int l_message_shape(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  mw_lstate *st = mw_lstate_of(L);
  if (!st || !st->methods) return 0;
  const upb_DefPool *pool = mw_schema_pool(mw_methods_schema(st->methods));
  const upb_MessageDef *m = upb_DefPool_FindMessageByName(pool, name);
  if (!m) return 0;
  lua_createtable(L, 0, 2);
  lua_pushstring(L, upb_MessageDef_FullName(m));
  lua_setfield(L, -2, "name");
  int n = upb_MessageDef_FieldCount(m);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    push_field(L, upb_MessageDef_Field(m, i));
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "fields");
  return 1;
}

/* core.method_types(index) -> the full names of method index's request and
 * response messages. */
static int l_method_types(lua_State *L) {
  lua_Integer i = luaL_checkinteger(L, 1);
  mw_lstate *st = mw_lstate_of(L);
  if (!st || !st->methods || i < 0 || (size_t)i >= mw_methods_count(st->methods)) return 0;
  const mw_method *m = mw_methods_at(st->methods, (size_t)i);
  lua_pushstring(L, upb_MessageDef_FullName(m->input));
  lua_pushstring(L, upb_MessageDef_FullName(m->output));
  return 2;
}

/* --- regular expressions ------------------------------------------------------- */

typedef struct lregex {
  regex_t re;
  int compiled;
} lregex;

static int regex_gc(lua_State *L) {
  lregex *r = luaL_checkudata(L, 1, MW_MT_REGEX);
  if (r->compiled) regfree(&r->re);
  r->compiled = 0;
  return 0;
}

/* core.regex(pattern) -> a compiled POSIX extended regular expression, or
 * nil, err for a bad or oversized pattern. */
static int l_regex(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  if (len > MW_REGEX_MAX_PATTERN) {
    lua_pushnil(L);
    lua_pushfstring(L, "a pattern is at most %d bytes", MW_REGEX_MAX_PATTERN);
    return 2;
  }
  if (strlen(p) != len) {
    lua_pushnil(L);
    lua_pushliteral(L, "a pattern cannot hold a NUL byte");
    return 2;
  }
  lregex *r = lua_newuserdatauv(L, sizeof *r, 0);
  r->compiled = 0;
  luaL_setmetatable(L, MW_MT_REGEX);
  int rc = regcomp(&r->re, p, REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char msg[256];
    regerror(rc, &r->re, msg, sizeof msg);
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
  }
  r->compiled = 1;
  return 1;
}

/* regex:test(s) -> whether s matches (anywhere, as Go's MatchString); a
 * text past 64 KiB or holding a NUL never matches. */
static int regex_test(lua_State *L) {
  lregex *r = luaL_checkudata(L, 1, MW_MT_REGEX);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  if (!r->compiled || len > MW_REGEX_MAX_SUBJECT || strlen(s) != len) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushboolean(L, regexec(&r->re, s, 0, NULL, 0) == 0);
  return 1;
}

/* The --record directory of the generation bound last (owned; NULL: not
 * recording). Set at bind time on the main thread, read by workers when
 * they save, hence the lock. */
static pthread_mutex_t record_mu = PTHREAD_MUTEX_INITIALIZER;
static char *record_dir;

/* --- use counters (options.times) ---------------------------------------------- */

/* One counter per stub key, in a process-wide table every worker's state
 * shares: a stub with `times: 3` answers three calls in all, whichever
 * workers they land on. Stubs with a limit are few; the table is a
 * chained hash that lives until mw_lstub_free. */
#define N_BUCKETS 256

typedef struct counter {
  struct counter *next;
  int64_t used;
  size_t len;
  char key[]; /* len bytes (a key may hold NULs), then a NUL */
} counter;

static pthread_mutex_t counters_mu = PTHREAD_MUTEX_INITIALIZER;
static counter *buckets[N_BUCKETS];

static unsigned hash_key(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h % N_BUCKETS;
}

/* The counter of key, made when make; NULL when absent (or out of memory).
 * Caller holds counters_mu. */
static counter *find_counter(const char *key, size_t len, int make) {
  unsigned b = hash_key(key, len);
  for (counter *c = buckets[b]; c; c = c->next)
    if (c->len == len && memcmp(c->key, key, len) == 0) return c;
  if (!make) return NULL;
  counter *c = malloc(sizeof *c + len + 1);
  if (!c) return NULL;
  memcpy(c->key, key, len);
  c->key[len] = 0;
  c->len = len;
  c->used = 0;
  c->next = buckets[b];
  buckets[b] = c;
  return c;
}

/* core.stub_take(key, limit) -> true, n (this is its n-th use) and counts
 * one use when key has been used fewer than limit times (limit 0: no limit,
 * counted all the same), else false, n (the uses so far). */
static int l_stub_take(lua_State *L) {
  size_t len;
  const char *key = luaL_checklstring(L, 1, &len);
  lua_Integer limit = luaL_checkinteger(L, 2);
  pthread_mutex_lock(&counters_mu);
  counter *c = find_counter(key, len, 1);
  int ok = c && (limit <= 0 || c->used < limit);
  if (ok) c->used++;
  lua_Integer used = c ? (lua_Integer)c->used : 0;
  pthread_mutex_unlock(&counters_mu);
  if (!c) return luaL_error(L, "out of memory");
  lua_pushboolean(L, ok);
  lua_pushinteger(L, used);
  return 2;
}

/* core.stub_used(key) -> how many calls the stub of key answered. */
static int l_stub_used(lua_State *L) {
  size_t len;
  const char *key = luaL_checklstring(L, 1, &len);
  pthread_mutex_lock(&counters_mu);
  counter *c = find_counter(key, len, 0);
  lua_Integer n = c ? (lua_Integer)c->used : 0;
  pthread_mutex_unlock(&counters_mu);
  lua_pushinteger(L, n);
  return 1;
}

void mw_lstub_free(void) {
  pthread_mutex_lock(&record_mu);
  free(record_dir);
  record_dir = NULL;
  pthread_mutex_unlock(&record_mu);
  pthread_mutex_lock(&counters_mu);
  for (size_t b = 0; b < N_BUCKETS; b++) {
    counter *c = buckets[b];
    while (c) {
      counter *next = c->next;
      free(c);
      c = next;
    }
    buckets[b] = NULL;
  }
  pthread_mutex_unlock(&counters_mu);
}

/* --- the admin API's registry (shared/mw_stubreg.h) ---------------------------- */

/* core.stub_version() -> the version of the stubs added at run time (0:
 * none ever). */
static int l_stub_version(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mw_stubreg_version());
  return 1;
}

/* A copy of the registry's stubs, taken under its lock with malloc (a Lua
 * allocation there could raise and leave the lock held), owned by a
 * userdata so that an error while they are pushed frees them. */
#define MW_MT_STUBSNAP "moonwire.stub_snapshot"

typedef struct snap_item {
  char id[MW_STUBREG_ID_MAX];
  char *json;
  size_t len;
  uint64_t serial;
} snap_item;

typedef struct snap {
  snap_item *v;
  size_t n, cap;
  int oom;
} snap;

static void snap_clear(snap *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i].json);
  free(s->v);
  s->v = NULL;
  s->n = s->cap = 0;
}

static int snap_gc(lua_State *L) {
  snap_clear(luaL_checkudata(L, 1, MW_MT_STUBSNAP));
  return 0;
}

static void copy_added(void *ud, const char *id, const char *json, size_t len,
                       uint64_t serial) {
  snap *s = ud;
  if (s->oom) return;
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 16;
    snap_item *grown = realloc(s->v, cap * sizeof *grown);
    if (!grown) {
      s->oom = 1;
      return;
    }
    s->v = grown;
    s->cap = cap;
  }
  snap_item *it = &s->v[s->n];
  it->json = malloc(len + 1);
  if (!it->json) {
    s->oom = 1;
    return;
  }
  memcpy(it->json, json, len);
  it->json[len] = 0;
  it->len = len;
  it->serial = serial;
  snprintf(it->id, sizeof it->id, "%s", id);
  s->n++;
}

/* core.stub_added() -> {{id=, json=, serial=}, ...} (the stubs added at run
 * time, in order), version. */
static int l_stub_added(lua_State *L) {
  snap *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, MW_MT_STUBSNAP);
  uint64_t v = mw_stubreg_each(copy_added, s);
  if (s->oom) return luaL_error(L, "out of memory");
  lua_createtable(L, (int)s->n, 0);
  for (size_t i = 0; i < s->n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, s->v[i].id);
    lua_setfield(L, -2, "id");
    lua_pushlstring(L, s->v[i].json, s->v[i].len);
    lua_setfield(L, -2, "json");
    lua_pushinteger(L, (lua_Integer)s->v[i].serial);
    lua_setfield(L, -2, "serial");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  snap_clear(s);
  lua_pushinteger(L, (lua_Integer)v);
  return 2;
}

/* core.stub_record(service, method, stub_id_or_nil, request_json, code):
 * one call into the history the admin API serves. */
static int l_stub_record(lua_State *L) {
  const char *svc = luaL_checkstring(L, 1), *method = luaL_checkstring(L, 2);
  const char *stub = luaL_optstring(L, 3, "");
  size_t len = 0;
  const char *req = luaL_optlstring(L, 4, "", &len);
  int code = (int)luaL_optinteger(L, 5, 0);
  mw_stubreg_record(svc, method, stub, req, len, code);
  return 0;
}

/* core.stub_admin() -> whether the admin listener is on (its API reads the
 * history, which is only kept then). Bind time only. */
static int l_stub_admin(lua_State *L) {
  mw_lstate *st = mw_lstate_of(L);
  lua_pushboolean(L, st && st->cfg && st->cfg->admin.listen);
  return 1;
}

/* --- upstream and --record -------------------------------------------------- */


/* core.stub_upstream() -> the upstream ({address =, tls = nil | true |
 * {ca =, cert =, key =, server_name =}}, as mw.client takes them) or nil,
 * and whether calls forwarded there are recorded (serve --record). Bind
 * time only; it also fixes the directory core.stub_save writes to. */
static int l_stub_upstream(lua_State *L) {
  mw_lstate *st = mw_lstate_of(L);
  if (!st || !st->cfg || !st->cfg->upstream) {
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 2;
  }
  char *dir = st->cfg->record ? strdup(st->cfg->record) : NULL;
  if (st->cfg->record && !dir) return luaL_error(L, "out of memory");
  pthread_mutex_lock(&record_mu);
  free(record_dir);
  record_dir = dir;
  pthread_mutex_unlock(&record_mu);
  const mw_config *c = st->cfg;
  lua_createtable(L, 0, 2);
  lua_pushstring(L, c->upstream);
  lua_setfield(L, -2, "address");
  if (c->upstream_tls.tls) {
    const char *names[] = {"ca", "cert", "key", "server_name"};
    const char *vals[] = {c->upstream_tls.ca, c->upstream_tls.cert, c->upstream_tls.key,
                          c->upstream_tls.server_name};
    int files = 0;
    for (int i = 0; i < 4; i++) files |= vals[i] != NULL;
    if (files) {
      lua_createtable(L, 0, 4);
      for (int i = 0; i < 4; i++) {
        if (!vals[i]) continue;
        lua_pushstring(L, vals[i]);
        lua_setfield(L, -2, names[i]);
      }
    } else {
      lua_pushboolean(L, 1); /* the system's roots */
    }
    lua_setfield(L, -2, "tls");
  }
  lua_pushboolean(L, dir != NULL);
  return 2;
}

/* core.stub_save(name, text) -> true, or nil, err: writes text as the file
 * name (letters, digits, '.', '_', '-' only) of the --record directory,
 * through a temporary file and a rename, so that a watcher never sees half
 * a stub. Scripts cannot reach any other path with it. */
static int l_stub_save(lua_State *L) {
  size_t nlen, len;
  const char *name = luaL_checklstring(L, 1, &nlen);
  const char *text = luaL_checklstring(L, 2, &len);
  if (nlen == 0 || nlen > 200 || name[0] == '.') return luaL_error(L, "stub_save: bad file name");
  for (size_t i = 0; i < nlen; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '.' || c == '_' || c == '-'))
      return luaL_error(L, "stub_save: bad file name");
  }
  pthread_mutex_lock(&record_mu);
  char *path = record_dir ? mw_fs_join_norm(record_dir, name) : NULL;
  int on = record_dir != NULL;
  pthread_mutex_unlock(&record_mu);
  if (!on) {
    lua_pushnil(L);
    lua_pushliteral(L, "not recording");
    return 2;
  }
  if (!path) return luaL_error(L, "out of memory");
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) {
    free(path);
    return luaL_error(L, "out of memory");
  }
  /* the temporary name is hidden (a dot) so that the watcher ignores it */
  const char *slash = strrchr(path, '/');
  size_t dlen = (size_t)(slash - path) + 1;
  memcpy(tmp, path, dlen);
  snprintf(tmp + dlen, plen + 16 - dlen, ".%s.tmp", slash + 1);
  FILE *f = fopen(tmp, "wb");
  int ok = f && fwrite(text, 1, len, f) == len;
  if (f && fclose(f) != 0) ok = 0;
  if (ok && rename(tmp, path) != 0) ok = 0;
  if (!ok) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    remove(tmp);
  } else {
    lua_pushboolean(L, 1);
  }
  free(tmp);
  free(path);
  return ok ? 1 : 2;
}

static const luaL_Reg funcs[] = {
    {"stub_upstream", l_stub_upstream}, {"stub_save", l_stub_save},
    {"stub_version", l_stub_version}, {"stub_added", l_stub_added},
    {"stub_record", l_stub_record},   {"stub_admin", l_stub_admin},
    {"stub_files", l_stub_files},   {"stub_all", l_stub_all},
    {"message_shape", l_message_shape}, {"method_types", l_method_types},
    {"regex", l_regex},             {"stub_take", l_stub_take},
    {"stub_used", l_stub_used},     {NULL, NULL},
};

void mw_lstub_open(lua_State *L) {
  if (luaL_newmetatable(L, MW_MT_STUBSNAP)) {
    lua_pushcfunction(L, snap_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, MW_MT_REGEX)) {
    lua_pushcfunction(L, regex_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    lua_pushcfunction(L, regex_test);
    lua_setfield(L, -2, "test");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
