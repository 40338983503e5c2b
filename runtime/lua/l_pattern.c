/* string.find, string.match, string.gmatch and string.gsub with a matcher
 * that a handler's budget reaches. Lua's own matcher backtracks inside one
 * C call, where neither the count hook nor the deadline can stop it:
 * ("a"):rep(30000):find(".-.-.-.-b$") runs for hours and takes its worker
 * with it. This matcher has the same semantics (Lua 5.4's patterns, its
 * error messages, its results) and counts its steps: every MW_PAT_TICK
 * steps it asks the budget (mw_co_overrun) and raises the handler's stop
 * when the deadline or limits.handler_cpu_ms has passed. Outside a handler
 * (load time) it runs unbounded, as Lua's does.
 *
 * The matcher holds nothing but C stack, so raising from any depth is
 * safe. tests/unit/lua/test_pattern.c checks it against Lua's own functions
 * on a corpus of patterns and on random ones. */
#include <ctype.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lua/l_api.h"
#include "lua/mw_co.h"

#define PAT_MAXCAPTURES 32 /* LUA_MAXCAPTURES */
#define PAT_MAXDEPTH 200   /* Lua's MAXCCALLS for the matcher */
#define PAT_ESC '%'
#define PAT_SPECIALS "^$*+?.([%-"
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
/* Steps between two looks at the budget: a look costs a clock read, a step
 * a few nanoseconds. */
#define MW_PAT_TICK 4096

typedef struct mstate {
  const char *src_init, *src_end, *p_end;
  lua_State *L;
  int depth;      /* recursion left */
  int level;      /* captures open or closed so far */
  unsigned steps; /* left until the next look at the budget */
  struct {
    const char *init;
    ptrdiff_t len;
  } capture[PAT_MAXCAPTURES];
} mstate;

static const char *match(mstate *ms, const char *s, const char *p);

static void tick(mstate *ms) {
  if (--ms->steps) return;
  ms->steps = MW_PAT_TICK;
  if (mw_co_overrun(ms->L)) lua_error(ms->L);
}

static int check_capture(mstate *ms, int l) {
  l -= '1';
  if (l < 0 || l >= ms->level || ms->capture[l].len == CAP_UNFINISHED)
    return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
  return l;
}

static int capture_to_close(mstate *ms) {
  int level = ms->level;
  for (level--; level >= 0; level--)
    if (ms->capture[level].len == CAP_UNFINISHED) return level;
  return luaL_error(ms->L, "invalid pattern capture");
}

/* Past the single-character class at p. */
static const char *class_end(mstate *ms, const char *p) {
  switch (*p++) {
  case PAT_ESC:
    if (p == ms->p_end) luaL_error(ms->L, "malformed pattern (ends with '%%')");
    return p + 1;
  case '[':
    if (*p == '^') p++;
    do { /* the first character is always part of the set: "[]]" */
      if (p == ms->p_end) luaL_error(ms->L, "malformed pattern (missing ']')");
      if (*(p++) == PAT_ESC && p < ms->p_end) p++;
    } while (*p != ']');
    return p + 1;
  default: return p;
  }
}

static int class_matches(int c, int cl) {
  int res;
  switch (tolower(cl)) {
  case 'a': res = isalpha(c); break;
  case 'c': res = iscntrl(c); break;
  case 'd': res = isdigit(c); break;
  case 'g': res = isgraph(c); break;
  case 'l': res = islower(c); break;
  case 'p': res = ispunct(c); break;
  case 's': res = isspace(c); break;
  case 'u': res = isupper(c); break;
  case 'w': res = isalnum(c); break;
  case 'x': res = isxdigit(c); break;
  case 'z': res = c == 0; break; /* deprecated in Lua, still matched */
  default: return cl == c;
  }
  if (isupper(cl)) res = !res;
  return res;
}

/* Whether c is in the set [p .. ec], ec at its ']'. */
static int set_matches(int c, const char *p, const char *ec) {
  int in = 1;
  if (*(p + 1) == '^') {
    in = 0;
    p++;
  }
  while (++p < ec) {
    if (*p == PAT_ESC) {
      p++;
      if (class_matches(c, (unsigned char)*p)) return in;
    } else if (*(p + 1) == '-' && p + 2 < ec) {
      p += 2;
      if ((unsigned char)*(p - 2) <= c && c <= (unsigned char)*p) return in;
    } else if ((unsigned char)*p == c) {
      return in;
    }
  }
  return !in;
}

static int single_matches(mstate *ms, const char *s, const char *p, const char *ep) {
  if (s >= ms->src_end) return 0;
  int c = (unsigned char)*s;
  switch (*p) {
  case '.': return 1;
  case PAT_ESC: return class_matches(c, (unsigned char)*(p + 1));
  case '[': return set_matches(c, p, ep - 1);
  default: return (unsigned char)*p == c;
  }
}

static const char *match_balance(mstate *ms, const char *s, const char *p) {
  if (p >= ms->p_end - 1)
    luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
  if (*s != *p) return NULL;
  int open = *p, close = *(p + 1), depth = 1;
  while (++s < ms->src_end) {
    tick(ms);
    if (*s == close) {
      if (--depth == 0) return s + 1;
    } else if (*s == open) {
      depth++;
    }
  }
  return NULL;
}

static const char *max_expand(mstate *ms, const char *s, const char *p, const char *ep) {
  ptrdiff_t i = 0;
  while (single_matches(ms, s + i, p, ep)) {
    tick(ms);
    i++;
  }
  for (; i >= 0; i--) { /* the longest first, then shorter ones */
    const char *res = match(ms, s + i, ep + 1);
    if (res) return res;
  }
  return NULL;
}

static const char *min_expand(mstate *ms, const char *s, const char *p, const char *ep) {
  for (;;) {
    const char *res = match(ms, s, ep + 1);
    if (res) return res;
    if (!single_matches(ms, s, p, ep)) return NULL;
    s++;
  }
}

static const char *start_capture(mstate *ms, const char *s, const char *p, int what) {
  if (ms->level >= PAT_MAXCAPTURES) luaL_error(ms->L, "too many captures");
  ms->capture[ms->level].init = s;
  ms->capture[ms->level].len = what;
  ms->level++;
  const char *res = match(ms, s, p);
  if (!res) ms->level--;
  return res;
}

static const char *end_capture(mstate *ms, const char *s, const char *p) {
  int l = capture_to_close(ms);
  ms->capture[l].len = s - ms->capture[l].init;
  const char *res = match(ms, s, p);
  if (!res) ms->capture[l].len = CAP_UNFINISHED;
  return res;
}

static const char *match_capture(mstate *ms, const char *s, int l) {
  l = check_capture(ms, l);
  size_t len = (size_t)ms->capture[l].len;
  if ((size_t)(ms->src_end - s) >= len && memcmp(ms->capture[l].init, s, len) == 0)
    return s + len;
  return NULL;
}

static const char *match(mstate *ms, const char *s, const char *p) {
  if (ms->depth-- == 0) luaL_error(ms->L, "pattern too complex");
  tick(ms);
  while (p != ms->p_end) {
    tick(ms);
    switch (*p) {
    case '(':
      s = *(p + 1) == ')' ? start_capture(ms, s, p + 2, CAP_POSITION)
                          : start_capture(ms, s, p + 1, CAP_UNFINISHED);
      goto done;
    case ')': s = end_capture(ms, s, p + 1); goto done;
    case '$':
      if (p + 1 != ms->p_end) goto single; /* '$' inside: a plain character */
      s = s == ms->src_end ? s : NULL;
      goto done;
    case PAT_ESC:
      switch (*(p + 1)) {
      case 'b':
        s = match_balance(ms, s, p + 2);
        if (s) {
          p += 4;
          continue;
        }
        goto done;
      case 'f': {
        p += 2;
        if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
        const char *ep = class_end(ms, p);
        int prev = s == ms->src_init ? '\0' : (unsigned char)*(s - 1);
        if (!set_matches(prev, p, ep - 1) && set_matches((unsigned char)*s, p, ep - 1)) {
          p = ep;
          continue;
        }
        s = NULL;
        goto done;
      }
      case '0': case '1': case '2': case '3': case '4':
      case '5': case '6': case '7': case '8': case '9':
        s = match_capture(ms, s, (unsigned char)*(p + 1));
        if (s) {
          p += 2;
          continue;
        }
        goto done;
      default: goto single;
      }
    default:
    single: {
      const char *ep = class_end(ms, p);
      if (!single_matches(ms, s, p, ep)) {
        if (*ep == '*' || *ep == '?' || *ep == '-') { /* may match nothing */
          p = ep + 1;
          continue;
        }
        s = NULL;
      } else {
        switch (*ep) {
        case '?': {
          const char *res = match(ms, s + 1, ep + 1);
          if (res) {
            s = res;
          } else {
            p = ep + 1;
            continue;
          }
          break;
        }
        case '+': s = max_expand(ms, s + 1, p, ep); break;
        case '*': s = max_expand(ms, s, p, ep); break;
        case '-': s = min_expand(ms, s, p, ep); break;
        default:
          s++;
          p = ep;
          continue;
        }
      }
      goto done;
    }
    }
  }
done:
  ms->depth++;
  return s;
}

/* --- results ------------------------------------------------------------------ */

/* Capture i, or the whole match (s .. e) when the pattern has none. */
static void push_one(mstate *ms, int i, const char *s, const char *e) {
  if (i >= ms->level) {
    if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
    lua_pushlstring(ms->L, s, (size_t)(e - s));
    return;
  }
  ptrdiff_t l = ms->capture[i].len;
  if (l == CAP_UNFINISHED) luaL_error(ms->L, "unfinished capture");
  if (l == CAP_POSITION)
    lua_pushinteger(ms->L, (ms->capture[i].init - ms->src_init) + 1);
  else
    lua_pushlstring(ms->L, ms->capture[i].init, (size_t)l);
}

static int push_captures(mstate *ms, const char *s, const char *e) {
  int n = ms->level == 0 && s ? 1 : ms->level;
  luaL_checkstack(ms->L, n, "too many captures");
  for (int i = 0; i < n; i++) push_one(ms, i, s, e);
  return n;
}

static void prepare(mstate *ms, lua_State *L, const char *s, size_t ls, const char *p,
                    size_t lp) {
  ms->L = L;
  ms->src_init = s;
  ms->src_end = s + ls;
  ms->p_end = p + lp;
  ms->steps = MW_PAT_TICK;
}

static void restart(mstate *ms) {
  ms->level = 0;
  ms->depth = PAT_MAXDEPTH;
}

/* string.find's and string.gmatch's start: 1-based, negative from the end. */
static size_t start_at(lua_Integer pos, size_t len) {
  if (pos > 0) return (size_t)pos;
  if (pos == 0 || pos < -(lua_Integer)len) return 1;
  return len + (size_t)pos + 1;
}

static int has_specials(const char *p, size_t l) {
  size_t upto = 0;
  do { /* strpbrk stops at a NUL: look past each one */
    if (strpbrk(p + upto, PAT_SPECIALS)) return 1;
    upto += strlen(p + upto) + 1;
  } while (upto <= l);
  return 0;
}

static const char *find_plain(const char *s, size_t ls, const char *p, size_t lp) {
  if (lp == 0) return s;
  if (lp > ls) return NULL;
  const char *end = s + (ls - lp) + 1;
  while (s < end) {
    const char *at = memchr(s, *p, (size_t)(end - s));
    if (!at) return NULL;
    if (memcmp(at + 1, p + 1, lp - 1) == 0) return at;
    s = at + 1;
  }
  return NULL;
}

static int find_or_match(lua_State *L, int find) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_at(luaL_optinteger(L, 3, 1), ls);
  if (init > ls + 1) {
    luaL_pushfail(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
    const char *at = find_plain(s + init - 1, ls - init + 1, p, lp);
    if (at) {
      lua_pushinteger(L, (at - s) + 1);
      lua_pushinteger(L, (at - s) + (lua_Integer)lp);
      return 2;
    }
  } else {
    mstate ms;
    const char *from = s + init - 1;
    int anchor = *p == '^';
    if (anchor) p++, lp--;
    prepare(&ms, L, s, ls, p, lp);
    do {
      restart(&ms);
      const char *e = match(&ms, from, p);
      if (e) {
        if (!find) return push_captures(&ms, from, e);
        lua_pushinteger(L, (from - s) + 1);
        lua_pushinteger(L, e - s);
        return push_captures(&ms, NULL, 0) + 2;
      }
    } while (from++ < ms.src_end && !anchor);
  }
  luaL_pushfail(L);
  return 1;
}

static int l_find(lua_State *L) { return find_or_match(L, 1); }
static int l_match(lua_State *L) { return find_or_match(L, 0); }

/* gmatch's iterator state, a userdata; upvalues 1 and 2 keep the subject
 * and the pattern alive. */
typedef struct gmatch_state {
  const char *src, *p, *last;
  mstate ms;
} gmatch_state;

static int gmatch_next(lua_State *L) {
  gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
  g->ms.L = L;
  for (const char *src = g->src; src <= g->ms.src_end; src++) {
    restart(&g->ms);
    const char *e = match(&g->ms, src, g->p);
    if (e && e != g->last) {
      g->src = g->last = e;
      return push_captures(&g->ms, src, e);
    }
  }
  return 0;
}

static int l_gmatch(lua_State *L) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_at(luaL_optinteger(L, 3, 1), ls) - 1;
  lua_settop(L, 2);
  gmatch_state *g = lua_newuserdatauv(L, sizeof *g, 0);
  if (init > ls) init = ls + 1; /* past the end: nothing to match */
  prepare(&g->ms, L, s, ls, p, lp);
  g->src = s + init;
  g->p = p;
  g->last = NULL;
  lua_pushcclosure(L, gmatch_next, 3);
  return 1;
}

/* The replacement string, with %0 .. %9 and %%. */
static void add_string(mstate *ms, luaL_Buffer *b, const char *s, const char *e) {
  lua_State *L = ms->L;
  size_t l;
  const char *news = lua_tolstring(L, 3, &l), *p;
  while ((p = memchr(news, PAT_ESC, l)) != NULL) {
    luaL_addlstring(b, news, (size_t)(p - news));
    p++;
    if (*p == PAT_ESC) {
      luaL_addchar(b, *p);
    } else if (*p == '0') {
      luaL_addlstring(b, s, (size_t)(e - s));
    } else if (isdigit((unsigned char)*p)) {
      push_one(ms, *p - '1', s, e);
      luaL_tolstring(L, -1, NULL);
      lua_remove(L, -2);
      luaL_addvalue(b);
    } else {
      luaL_error(L, "invalid use of '%c' in replacement string", PAT_ESC);
    }
    l -= (size_t)(p + 1 - news);
    news = p + 1;
  }
  luaL_addlstring(b, news, l);
}

/* Adds the replacement of one match; returns whether it changed anything. */
static int add_value(mstate *ms, luaL_Buffer *b, const char *s, const char *e, int tr) {
  lua_State *L = ms->L;
  switch (tr) {
  case LUA_TFUNCTION: {
    lua_pushvalue(L, 3);
    int n = push_captures(ms, s, e);
    lua_call(L, n, 1);
    break;
  }
  case LUA_TTABLE:
    push_one(ms, 0, s, e);
    lua_gettable(L, 3);
    break;
  default:
    add_string(ms, b, s, e);
    return 1;
  }
  if (!lua_toboolean(L, -1)) { /* nil or false: keep the original */
    lua_pop(L, 1);
    luaL_addlstring(b, s, (size_t)(e - s));
    return 0;
  }
  if (!lua_isstring(L, -1))
    return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(b);
  return 1;
}

static int l_gsub(lua_State *L) {
  size_t srcl, lp;
  const char *src = luaL_checklstring(L, 1, &srcl);
  const char *p = luaL_checklstring(L, 2, &lp);
  const char *last = NULL;
  int tr = lua_type(L, 3);
  lua_Integer max_s = luaL_optinteger(L, 4, (lua_Integer)srcl + 1);
  int anchor = *p == '^';
  lua_Integer n = 0;
  int changed = 0;
  luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
                          tr == LUA_TTABLE,
                   3, "string/function/table");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (anchor) p++, lp--;
  mstate ms;
  prepare(&ms, L, src, srcl, p, lp);
  while (n < max_s) {
    restart(&ms);
    const char *e = match(&ms, src, p);
    if (e && e != last) {
      n++;
      changed = add_value(&ms, &b, src, e, tr) | changed;
      src = last = e;
    } else if (src < ms.src_end) {
      luaL_addchar(&b, *src++);
    } else {
      break;
    }
    if (anchor) break;
  }
  if (!changed) {
    lua_pushvalue(L, 1);
  } else {
    luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
    luaL_pushresult(&b);
  }
  lua_pushinteger(L, n);
  return 2;
}

static const luaL_Reg funcs[] = {
    {"find", l_find}, {"match", l_match}, {"gmatch", l_gmatch}, {"gsub", l_gsub},
    {NULL, NULL},
};

void mw_lpattern_install(lua_State *L) {
  lua_getglobal(L, LUA_STRLIBNAME);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
