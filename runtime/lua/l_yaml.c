/* core.load_yaml(path [, level]): a YAML file as Lua tables, for data that
 * scripts keep beside them (an error catalogue). There is no YAML parser in
 * Lua; this one is libyaml's, which the config already uses.
 *
 * The mapping (the same as the config's, docs/lua-api.md "load_yaml"):
 * mappings -> tables, sequences -> arrays, plain scalars true/false ->
 * booleans, integers and floats -> numbers, null, ~ and empty -> absent (a
 * mapping entry with no value is left out), everything else (quoted scalars
 * always) -> strings. Keys are scalars, converted alike; a key seen twice,
 * an alias (*name), a tag other than the standard ones, more than one
 * document, nesting past 100 levels or a file over 1 MiB are errors. Errors
 * are raised as "path:line: what". */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <yaml.h>

#include "lua/l_api.h"
#include "lua/mw_sandbox.h"

#define MW_YAML_MAX_BYTES (1 << 20)
#define MW_YAML_MAX_DEPTH 100
#define MW_MT_YAML "moonwire.yaml"

/* The parser and its file, owned by a userdata so that an error raised in
 * the middle of a document frees them (at collection). */
typedef struct yaml_src {
  yaml_parser_t parser;
  yaml_event_t event; /* the current event, when has_event */
  FILE *file;
  int has_parser, has_event;
  const char *path; /* the path as shown, anchored on the Lua stack */
  int where;        /* stack index of the where table */
} yaml_src;

static void src_close(yaml_src *s) {
  if (s->has_event) yaml_event_delete(&s->event);
  if (s->has_parser) yaml_parser_delete(&s->parser);
  if (s->file) fclose(s->file);
  s->has_event = s->has_parser = 0;
  s->file = NULL;
}

static int src_gc(lua_State *L) {
  src_close(luaL_checkudata(L, 1, MW_MT_YAML));
  return 0;
}

static int fail_at(lua_State *L, yaml_src *s, size_t line, const char *what) {
  return luaL_error(L, "%s:%d: %s", s->path, (int)line + 1, what);
}

/* The next event into s->event (the previous one deleted). */
static void next_event(lua_State *L, yaml_src *s) {
  if (s->has_event) yaml_event_delete(&s->event);
  s->has_event = 0;
  if (!yaml_parser_parse(&s->parser, &s->event)) {
    const char *problem = s->parser.problem ? s->parser.problem : "invalid YAML";
    char msg[256];
    snprintf(msg, sizeof msg, "%s%s%s", problem, s->parser.context ? " " : "",
             s->parser.context ? s->parser.context : "");
    fail_at(L, s, s->parser.problem_mark.line, msg);
  }
  s->has_event = 1;
}

static int is_int(const char *v) {
  if (*v == '-' || *v == '+') v++;
  if (!*v) return 0;
  for (; *v; v++)
    if (*v < '0' || *v > '9') return 0;
  return 1;
}

/* Pushes a scalar event's value; pushes nothing and returns 0 for null. */
static int push_scalar(lua_State *L, yaml_src *s) {
  const yaml_event_t *e = &s->event;
  const char *v = (const char *)e->data.scalar.value;
  size_t len = e->data.scalar.length;
  const char *tag = (const char *)e->data.scalar.tag;
  if (tag && strcmp(tag, YAML_STR_TAG) != 0 && strcmp(tag, "!") != 0)
    fail_at(L, s, e->start_mark.line, "tags are not supported (quote the value)");
  if (!e->data.scalar.plain_implicit || tag) {
    lua_pushlstring(L, v, len);
    return 1;
  }
  if (len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
      strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0)
    return 0;
  if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 || strcmp(v, "TRUE") == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0 || strcmp(v, "FALSE") == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  /* Numbers as Lua reads them, but only decimal ones (no 0x, no "inf"):
   * YAML's core schema, short of its hex and octal forms. */
  if (strlen(v) == len && (is_int(v) || strspn(v, "+-0123456789.eE") == len) &&
      lua_stringtonumber(L, v) != 0)
    return 1;
  lua_pushlstring(L, v, len);
  return 1;
}

/* Notes where the table on top came from: where[table] = "path:line". */
static void note_where(lua_State *L, yaml_src *s, size_t line) {
  lua_pushvalue(L, -1);
  lua_pushfstring(L, "%s:%d", s->path, (int)line + 1);
  lua_rawset(L, s->where);
}

/* Pushes the node starting at the current event (0: a null, nothing pushed).
 * line: where its entry begins (a mapping value's key), for the where table. */
static int parse_node(lua_State *L, yaml_src *s, int depth, size_t line) {
  if (depth > MW_YAML_MAX_DEPTH)
    fail_at(L, s, s->event.start_mark.line, "nested too deep");
  luaL_checkstack(L, 8, "YAML nested too deep");
  switch (s->event.type) {
  case YAML_SCALAR_EVENT: return push_scalar(L, s);
  case YAML_ALIAS_EVENT:
    return fail_at(L, s, s->event.start_mark.line, "aliases (*name) are not supported");
  case YAML_SEQUENCE_START_EVENT: {
    lua_newtable(L);
    note_where(L, s, line);
    lua_Integer n = 0;
    for (;;) {
      next_event(L, s);
      if (s->event.type == YAML_SEQUENCE_END_EVENT) return 1;
      size_t at = s->event.start_mark.line;
      if (!parse_node(L, s, depth + 1, at))
        fail_at(L, s, at, "a sequence cannot hold null");
      lua_rawseti(L, -2, ++n);
    }
  }
  case YAML_MAPPING_START_EVENT: {
    lua_newtable(L);
    note_where(L, s, line);
    for (;;) {
      next_event(L, s);
      if (s->event.type == YAML_MAPPING_END_EVENT) return 1;
      size_t at = s->event.start_mark.line;
      if (s->event.type != YAML_SCALAR_EVENT)
        fail_at(L, s, at, "mapping keys must be scalars");
      if (!push_scalar(L, s)) fail_at(L, s, at, "a mapping key cannot be null");
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) != LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushfstring(L, "duplicate key '%s'", luaL_tolstring(L, -1, NULL));
        fail_at(L, s, at, lua_tostring(L, -1));
      }
      lua_pop(L, 1);
      next_event(L, s);
      if (parse_node(L, s, depth + 1, at))
        lua_rawset(L, -3);
      else
        lua_pop(L, 1); /* the key of a null */
    }
  }
  default: return fail_at(L, s, s->event.start_mark.line, "unexpected YAML event");
  }
}

/* The file's path: as given when absolute, else relative to the directory
 * of the script running at the given stack level. Pushed on L. */
static const char *resolve(lua_State *L, const char *path, int level) {
  lua_Debug ar;
  if (path[0] == '/' || !lua_getstack(L, level, &ar) || !lua_getinfo(L, "S", &ar) ||
      ar.source[0] != '@') {
    lua_pushstring(L, path);
    return lua_tostring(L, -1);
  }
  const char *src = ar.source + 1;
  const char *slash = strrchr(src, '/');
  if (!slash) {
    lua_pushstring(L, path);
  } else {
    lua_pushlstring(L, src, (size_t)(slash - src + 1));
    lua_pushstring(L, path);
    lua_concat(L, 2);
  }
  return lua_tostring(L, -1);
}

/* core.load_yaml(path [, level]) -> value, where. level: the stack level of
 * the script the path is relative to (1, the default: the caller). where maps
 * each table of the value to "path:line", for the caller's own messages. */
static int l_load_yaml(lua_State *L) {
  const char *given = luaL_checkstring(L, 1);
  int level = (int)luaL_optinteger(L, 2, 1);
  lua_settop(L, 2);
  const char *path = resolve(L, given, level); /* [3] */
  struct stat st;
  if (stat(path, &st) != 0) return luaL_error(L, "%s: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode)) return luaL_error(L, "%s: not a file", path);
  if (st.st_size > MW_YAML_MAX_BYTES)
    return luaL_error(L, "%s: over %d bytes", path, MW_YAML_MAX_BYTES);
  if (!mw_sandbox_may_read(L, path))
    return luaL_error(L, "%s: only files inside the service directories can be read", path);
  lua_newtable(L); /* [4] where */
  yaml_src *s = lua_newuserdatauv(L, sizeof *s, 0); /* [5] */
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, MW_MT_YAML);
  s->path = path;
  s->where = 4;
  s->file = fopen(path, "rb");
  if (!s->file) return luaL_error(L, "%s: %s", path, strerror(errno));
  if (!yaml_parser_initialize(&s->parser)) return luaL_error(L, "out of memory");
  s->has_parser = 1;
  yaml_parser_set_input_file(&s->parser, s->file);
  next_event(L, s); /* stream start */
  next_event(L, s);
  int pushed = 0;
  if (s->event.type == YAML_DOCUMENT_START_EVENT) {
    next_event(L, s);
    pushed = parse_node(L, s, 0, s->event.start_mark.line);
    next_event(L, s); /* document end */
    next_event(L, s);
    if (s->event.type != YAML_STREAM_END_EVENT)
      fail_at(L, s, s->event.start_mark.line, "only one YAML document is supported");
  }
  src_close(s);
  if (!pushed) lua_newtable(L); /* an empty file: an empty table */
  lua_pushvalue(L, 4);
  return 2;
}

static const luaL_Reg funcs[] = {{"load_yaml", l_load_yaml}, {NULL, NULL}};

void mw_lyaml_open(lua_State *L) {
  if (luaL_newmetatable(L, MW_MT_YAML)) {
    lua_pushcfunction(L, src_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
