/* What moonwire.interceptors.trace needs of C: the W3C trace context and
 * ids (trace/mw_tracectx.h), ctx.trace, and handing a finished span to the
 * exporter (trace/mw_otlp.h) as OTLP JSON. Policy (what a span holds, the
 * status mapping) is the interceptor's; this file only encodes. */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mw_call.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"
#include "lua/mw_lstate.h"
#include "trace/mw_otlp.h"
#include "trace/mw_tracectx.h"

/* The request's value of key and how many times it came: from the call's
 * metadata for a real ctx, from ctx:metadata_values(key) for a spec's
 * table (which leaves the table on the stack). */
static int md_lookup(lua_State *L, int ctx, const char *key, const char **v, size_t *vl) {
  size_t kl = strlen(key);
  *v = NULL;
  *vl = 0;
  int n = 0;
  if (lua_type(L, ctx) == LUA_TTABLE) {
    lua_getfield(L, ctx, "metadata_values");
    lua_pushvalue(L, ctx);
    lua_pushstring(L, key);
    lua_call(L, 2, 1);
    n = (int)luaL_len(L, -1);
    if (n >= 1) {
      lua_rawgeti(L, -1, 1);
      *v = lua_tolstring(L, -1, vl);
      lua_pop(L, 1); /* the list keeps the string alive */
    }
    return n;
  }
  mw_lcall *h = mw_handle_check(L, ctx, MW_MT_CTX);
  size_t count = mw_call_metadata_count(h->call);
  for (size_t i = 0; i < count; i++) {
    const char *mk, *mv;
    size_t mkl, mvl;
    mw_call_metadata_at(h->call, i, &mk, &mkl, &mv, &mvl);
    if (mkl == kl && memcmp(mk, key, kl) == 0) {
      if (n++ == 0) {
        *v = mv;
        *vl = mvl;
      }
    }
  }
  return n;
}

/* core.trace_start(ctx, ratio, mt) -> t: the call's trace context, from
 * its traceparent/tracestate (one traceparent, valid, or a new trace; a
 * tracestate kept only with a parent, verbatim, when it is within the
 * limits; repeated tracestate headers are one list and are joined), as the
 * table ctx.trace is, with metatable mt, set as ctx.trace. In C because
 * every call with tracing on pays it, sampled or not. */
static int l_trace_start(lua_State *L) {
  double ratio = luaL_checknumber(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  const char *tp;
  size_t tpl;
  mw_traceparent p;
  int parent = md_lookup(L, 1, "traceparent", &tp, &tpl) == 1 &&
               mw_traceparent_parse(tp, tpl, &p) == 0;
  lua_settop(L, 3);
  uint8_t span[8];
  if (!parent) mw_trace_random(p.trace_id, 16);
  mw_trace_random(span, 8);
  int sampled = parent ? (p.flags & 1) : mw_trace_sample(p.trace_id, ratio);
  lua_createtable(L, 0, 8); /* 4 */
  char hdr[56];
  memcpy(hdr, "00-", 3);
  mw_trace_hex(p.trace_id, 16, hdr + 3);
  hdr[35] = '-';
  mw_trace_hex(span, 8, hdr + 36);
  hdr[52] = '-';
  hdr[53] = '0';
  hdr[54] = sampled ? '1' : '0';
  lua_pushlstring(L, hdr + 3, 32);
  lua_setfield(L, 4, "trace_id");
  lua_pushlstring(L, hdr + 36, 16);
  lua_setfield(L, 4, "span_id");
  lua_pushlstring(L, hdr, 55);
  lua_setfield(L, 4, "traceparent");
  /* The call's outbound calls carry this span as their parent. */
  mw_handle *hd = luaL_testudata(L, 1, MW_MT_CTX);
  if (hd && hd->h) {
    memcpy(hd->h->traceparent, hdr, 55);
    hd->h->traceparent[55] = '\0';
  }
  lua_pushboolean(L, sampled);
  lua_setfield(L, 4, "sampled");
  if (parent) {
    char hex[17];
    mw_trace_hex(p.parent_id, 8, hex);
    lua_pushlstring(L, hex, 16);
    lua_setfield(L, 4, "parent_span_id");
    const char *ts;
    size_t tsl;
    int n = md_lookup(L, 1, "tracestate", &ts, &tsl);
    if (n == 1 && mw_tracestate_ok(ts, tsl)) {
      lua_pushlstring(L, ts, tsl);
      lua_setfield(L, 4, "tracestate");
    } else if (n > 1) {
      lua_settop(L, 4);
      /* Joined in order: read each value again. */
      if (lua_type(L, 1) == LUA_TTABLE) {
        lua_getfield(L, 1, "metadata_values");
        lua_pushvalue(L, 1);
        lua_pushliteral(L, "tracestate");
        lua_call(L, 2, 1);
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "concat");
        lua_pushvalue(L, -3);
        lua_pushliteral(L, ",");
        lua_call(L, 2, 1);
      } else {
        mw_lcall *h = mw_handle_check(L, 1, MW_MT_CTX);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        size_t count = mw_call_metadata_count(h->call);
        int k = 0;
        for (size_t i = 0; i < count; i++) {
          const char *mk, *mv;
          size_t mkl, mvl;
          mw_call_metadata_at(h->call, i, &mk, &mkl, &mv, &mvl);
          if (mkl == 10 && memcmp(mk, "tracestate", 10) == 0) {
            if (k++) luaL_addchar(&b, ',');
            luaL_addlstring(&b, mv, mvl);
          }
        }
        luaL_pushresult(&b);
      }
      size_t jl;
      const char *j = lua_tolstring(L, -1, &jl);
      if (mw_tracestate_ok(j, jl)) {
        lua_pushvalue(L, -1);
        lua_setfield(L, 4, "tracestate");
      }
    }
    lua_settop(L, 4);
  } else {
    lua_settop(L, 4);
  }
  lua_pushvalue(L, 3);
  lua_setmetatable(L, 4);
  /* ctx.trace = t */
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_pushvalue(L, 4);
    lua_setfield(L, 1, "trace");
  } else {
    if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setiuservalue(L, 1, 1);
    }
    lua_pushvalue(L, 4);
    lua_setfield(L, -2, "trace");
    lua_settop(L, 4);
  }
  return 1;
}

static int unhex_id(const char *s, size_t len, uint8_t *out, size_t n) {
  if (len != 2 * n) return -1;
  for (size_t i = 0; i < 2 * n; i++) {
    char c = s[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return -1;
    if (i % 2 == 0) out[i / 2] = (uint8_t)(v << 4);
    else out[i / 2] |= (uint8_t)v;
  }
  return 0;
}

static void id_field(lua_State *L, int t, const char *key, uint8_t *out, size_t n, int required) {
  lua_getfield(L, t, key);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  if (s ? unhex_id(s, len, out, n) != 0 : required)
    luaL_error(L, "span.%s must be %d lowercase hex digits", key, (int)(2 * n));
  lua_pop(L, 1);
}

static uint64_t ns_of(double t) { return t > 0 ? (uint64_t)llround(t * 1e9) : 0; }

/* The attributes of table idx (into an empty b: each attribute after the
 * first gets its comma from mw_otlp_attr_*) (string keys; string, integer, float and
 * boolean values; others skipped) as an OTLP list body into b. */
static void attrs_json(lua_State *L, int idx, mw_buf *b) {
  if (lua_type(L, idx) != LUA_TTABLE) return;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      size_t kl, vl;
      const char *k = lua_tolstring(L, -2, &kl);
      switch (lua_type(L, -1)) {
      case LUA_TSTRING: {
        const char *v = lua_tolstring(L, -1, &vl);
        mw_otlp_attr_str(b, k, kl, v, vl);
        break;
      }
      case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) mw_otlp_attr_int(b, k, kl, (int64_t)lua_tointeger(L, -1));
        else mw_otlp_attr_double(b, k, kl, lua_tonumber(L, -1));
        break;
      case LUA_TBOOLEAN:
        mw_otlp_attr_bool(b, k, kl, lua_toboolean(L, -1));
        break;
      default:
        break;
      }
    }
    lua_pop(L, 1);
  }
}

/* The buffers of one trace_export, owned by a userdata on the stack: any
 * Lua call while they fill can raise (out of memory, a metamethod), and
 * the collector frees them then. */
#define MW_MT_TRACE_BUFS "moonwire.trace_bufs"

typedef struct trace_bufs {
  mw_buf attrs, events, a, out;
} trace_bufs;

static int l_trace_bufs_gc(lua_State *L) {
  trace_bufs *t = luaL_checkudata(L, 1, MW_MT_TRACE_BUFS);
  mw_buf_free(&t->attrs);
  mw_buf_free(&t->events);
  mw_buf_free(&t->a);
  mw_buf_free(&t->out);
  return 0;
}

/* core.trace_export(span): encodes span {trace_id=, span_id=,
 * parent_span_id=, name=, start=, finish= (seconds), attributes = {k = v},
 * events = {{name=, time=, attributes=}}, status = 0|1|2, message=} and
 * hands it to the exporter; nothing when the exporter does not run.
 * Returns the JSON (for specs). */
static int l_trace_export(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  trace_bufs *t = lua_newuserdatauv(L, sizeof *t, 0); /* 2 */
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, MW_MT_TRACE_BUFS);
  mw_buf *attrs = &t->attrs, *events = &t->events, *a = &t->a, *out = &t->out;
  mw_otlp_span s = {0};
  id_field(L, 1, "trace_id", s.trace_id, 16, 1);
  id_field(L, 1, "span_id", s.span_id, 8, 1);
  lua_getfield(L, 1, "parent_span_id");
  s.has_parent = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (s.has_parent) id_field(L, 1, "parent_span_id", s.parent_id, 8, 1);
  lua_getfield(L, 1, "name");
  s.name = lua_tostring(L, -1);
  lua_getfield(L, 1, "start");
  s.start_ns = ns_of(lua_tonumber(L, -1));
  lua_getfield(L, 1, "finish");
  s.end_ns = ns_of(lua_tonumber(L, -1));
  lua_getfield(L, 1, "status");
  s.status = (int)lua_tointeger(L, -1);
  lua_getfield(L, 1, "message");
  s.status_message = lua_tostring(L, -1);
  s.kind = 2; /* SERVER */
  lua_getfield(L, 1, "attributes");
  attrs_json(L, lua_gettop(L), attrs);
  lua_getfield(L, 1, "events");
  int ev = lua_gettop(L);
  if (lua_type(L, ev) == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, ev);
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_rawgeti(L, ev, i) == LUA_TTABLE) {
        int e = lua_gettop(L);
        char num[64];
        lua_getfield(L, e, "time");
        snprintf(num, sizeof num, "%s{\"timeUnixNano\":\"%llu\",\"name\":", i > 1 ? "," : "",
                 (unsigned long long)ns_of(lua_tonumber(L, -1)));
        mw_buf_puts(events, num);
        lua_getfield(L, e, "name");
        size_t nl = 0;
        const char *name = lua_tolstring(L, -1, &nl);
        mw_buf_json(events, name ? name : "", name ? nl : 0);
        mw_buf_puts(events, ",\"attributes\":[");
        lua_getfield(L, e, "attributes");
        attrs_json(L, lua_gettop(L), a);
        if (a->len) mw_buf_put(events, a->p, a->len);
        mw_buf_free(a);
        mw_buf_puts(events, "]}");
      }
      lua_settop(L, ev);
    }
  }
  s.attrs = attrs->p;
  s.events = events->p;
  mw_otlp_span_json(out, &s);
  mw_buf_free(attrs);
  mw_buf_free(events);
  if (out->oom) {
    mw_buf_free(out);
    return 0;
  }
  lua_pushlstring(L, out->p, out->len); /* may raise: t still owns out */
  char *json = out->p;
  size_t n = out->len;
  *out = (mw_buf){0}; /* taken out of t: nothing below raises */
  if (mw_otlp_running()) mw_otlp_submit(json, n); /* the exporter owns it now */
  else free(json);
  return 1;
}

/* core.trace_options() -> {sample=} from the config while the handlers are
 * bound when tracing is on and the exporter runs, else nil. */
static int l_trace_options(lua_State *L) {
  mw_lstate *st = mw_lstate_of(L);
  const mw_config *c = st ? st->cfg : NULL;
  /* The exporter starts with the server (tracing: is read at start only):
   * a reload that turns tracing on gets no interceptor it could not export. */
  if (!c || !c->tracing.otlp || !mw_otlp_running()) return 0;
  lua_createtable(L, 0, 1);
  lua_pushnumber(L, c->tracing.sample);
  lua_setfield(L, -2, "sample");
  return 1;
}

void mw_ltrace_push_stats(lua_State *L) {
  mw_otlp_stats s;
  mw_otlp_stats_get(&s);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)s.exported);
  lua_setfield(L, -2, "exported");
  lua_pushinteger(L, (lua_Integer)s.dropped);
  lua_setfield(L, -2, "dropped");
  lua_pushinteger(L, (lua_Integer)s.queued);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, (lua_Integer)s.requests_failed);
  lua_setfield(L, -2, "failed_requests");
}

/* core.trace_stats() -> {exported=, dropped=, queued=, failed_requests=}. */
static int l_trace_stats(lua_State *L) {
  mw_ltrace_push_stats(L);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"trace_start", l_trace_start},
    {"trace_export", l_trace_export},
    {"trace_options", l_trace_options}, {"trace_stats", l_trace_stats},
    {NULL, NULL},
};

void mw_ltrace_open(lua_State *L) {
  if (luaL_newmetatable(L, MW_MT_TRACE_BUFS)) {
    lua_pushcfunction(L, l_trace_bufs_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
