/* The bounded pattern functions (lua/l_pattern.c) against Lua's own: the
 * same results and the same errors on a corpus of patterns covering every
 * pattern item, and on random patterns over a small alphabet. The stock
 * functions are kept as std_find etc. before the replacements go in. */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lua/l_api.h"
#include "mw_test.h"

/* Runs a script that calls check(fn, ...) for each case; check compares the
 * two implementations and returns a description of the first difference. */
static const char script[] =
    "local ours = {find = string.find, match = string.match,\n"
    "              gmatch = string.gmatch, gsub = string.gsub}\n"
    "local std = {find = std_find, match = std_match, gmatch = std_gmatch, gsub = std_gsub}\n"
    "local function pack(ok, ...) return {n = select('#', ...), ok = ok, ...} end\n"
    "local function run(impl, fn, ...)\n"
    "  if fn == 'gmatch' then\n"
    "    local args = {...}\n"
    "    return pack(pcall(function()\n"
    "      local out = {}\n"
    "      for a, b, c in impl.gmatch(table.unpack(args)) do\n"
    "        out[#out + 1] = tostring(a) .. '|' .. tostring(b) .. '|' .. tostring(c)\n"
    "        if #out > 200 then break end\n"
    "      end\n"
    "      return table.concat(out, ',')\n"
    "    end))\n"
    "  end\n"
    "  return pack(pcall(impl[fn], ...))\n"
    "end\n"
    "-- Lua's errors name the function by the global it was found under\n"
    "local function same(a, b)\n"
    "  if not b.ok then b[1] = std_gsub(tostring(b[1]), \"'std_(%w+)'\", \"'string.%1'\") end\n"
    "  if a.ok ~= b.ok or a.n ~= b.n then return false end\n"
    "  for i = 1, a.n do if a[i] ~= b[i] then return false end end\n"
    "  return true\n"
    "end\n"
    "local function show(r)\n"
    "  local t = {tostring(r.ok)}\n"
    "  for i = 1, r.n do t[#t + 1] = tostring(r[i]) end\n"
    "  return table.concat(t, ' ')\n"
    "end\n"
    "cases, diffs = 0, {}\n"
    "function check(fn, ...)\n"
    "  cases = cases + 1\n"
    "  local a, b = run(ours, fn, ...), run(std, fn, ...)\n"
    "  if not same(a, b) and #diffs < 10 then\n"
    "    local args = {...}\n"
    "    for i = 1, select('#', ...) do args[i] = ('%q'):format(tostring(args[i])) end\n"
    "    diffs[#diffs + 1] = fn .. '(' .. table.concat(args, ', ') .. '): ours ' ..\n"
    "                        show(a) .. ' / lua ' .. show(b)\n"
    "  end\n"
    "end\n"
    "local subjects = {'', 'hello world', 'key = value; k2=v2', '  trim me  ',\n"
    "  'aaa', 'ab\\0cd\\0', '(a(b)c)', 'THE (quick) fox', '2024-01-31', 'x=1, y=22, z=333',\n"
    "  'f(a(b)c)d', 'The cat sat', '%%%', '[]]^-', 'aXbXc', '\\n\\t\\r', '\\200\\255abc'}\n"
    "local patterns = {'', 'o', 'o w', 'l+', 'l*', 'l-', 'l?o', '^h', '^hello$', 'd$',\n"
    "  '%a+', '%A+', '%d+', '%D', '%s*', '%S+', '%w+', '%W', '%l', '%u+', '%p', '%c',\n"
    "  '%x+', '%g+', '.', '.-', '.*', '(.)(.)', '()', '(%w+)=(%w+)', '(%w+)%s*=%s*(%w+)',\n"
    "  '%b()', '%b[]', '%f[%w]%w+', '%f[%W]', '[aeiou]', '[^aeiou ]+', '[a-c]+', '[%a_]',\n"
    "  '[]]', '[^]]', '[-a]', '[a-]', '(a)%1', '(%w)%1', '((a)(b))', '(h)(e)(l)', '$', '^',\n"
    "  'a$b', '%.', '%%', '[%]]', '(', ')', '%', '[a', '%b', '%f', '%fx', '(()', '%1', '(a)%2',\n"
    "  '%z', 'x*$', '^(%s*)(.-)(%s*)$', '%d%d%d%d%-%d%d%-%d%d', '%$', '[%d%-]+', '\\0', 'b\\0c'}\n"
    "for _, s in ipairs(subjects) do\n"
    "  for _, p in ipairs(patterns) do\n"
    "    check('find', s, p) check('find', s, p, 3) check('find', s, p, -4)\n"
    "    check('find', s, p, 1, true) check('find', s, p, 100) check('match', s, p)\n"
    "    check('match', s, p, 2) check('gmatch', s, p) check('gmatch', s, p, 4)\n"
    "    check('gsub', s, p, '<%0>') check('gsub', s, p, '%1-', 2)\n"
    "    check('gsub', s, p, {hello = 'HI', a = false, l = 1})\n"
    "    check('gsub', s, p, function(x, y) return y and x .. y end)\n"
    "    check('gsub', s, p, function() return {} end)\n"
    "    check('gsub', s, p, '%2') check('gsub', s, p, '%x') check('gsub', s, p, '%%')\n"
    "  end\n"
    "end\n"
    "-- random patterns over a small alphabet: quantifiers, sets, captures\n"
    "local seed = 12345\n"
    "local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n + 1 end\n"
    "local atoms = {'a', 'b', '.', '%a', '%d', '[ab]', '[^a]', '%s', 'x', '(', ')', '%1', '%b()'}\n"
    "local quants = {'', '', '*', '+', '-', '?'}\n"
    "local alphabet = {'a', 'b', 'x', '1', ' ', '(', ')'}\n"
    "for _ = 1, 3000 do\n"
    "  local p = rnd(4) == 1 and '^' or ''\n"
    "  for _ = 1, rnd(5) do p = p .. atoms[rnd(#atoms)] .. quants[rnd(#quants)] end\n"
    "  if rnd(5) == 1 then p = p .. '$' end\n"
    "  local s = ''\n"
    "  for _ = 1, rnd(12) - 1 do s = s .. alphabet[rnd(#alphabet)] end\n"
    "  check('find', s, p) check('match', s, p) check('gmatch', s, p) check('gsub', s, p, '[%0]')\n"
    "end\n"
    "-- the error messages\n"
    "check('find', 'a', string.rep('(', 40))\n"
    "check('gsub', 'abc', '%w', true)\n"
    "check('find', 'a', 'a', {})\n";

static void test_same_as_lua(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "string");
  const char *names[] = {"find", "match", "gmatch", "gsub"};
  for (int i = 0; i < 4; i++) {
    lua_getfield(L, -1, names[i]);
    char g[16];
    snprintf(g, sizeof g, "std_%s", names[i]);
    lua_setglobal(L, g);
  }
  lua_pop(L, 1);
  mw_lpattern_install(L);
  lua_getglobal(L, "string");
  lua_getfield(L, -1, "find");
  lua_getglobal(L, "std_find");
  MW_CHECK(!lua_rawequal(L, -1, -2)); /* the replacement is in place */
  lua_pop(L, 3);
  if (luaL_dostring(L, script) != LUA_OK) {
    fprintf(stderr, "script failed: %s\n", lua_tostring(L, -1));
    MW_CHECK(0);
  } else {
    lua_getglobal(L, "cases");
    long cases = (long)lua_tointeger(L, -1);
    MW_CHECK(cases > 20000);
    lua_getglobal(L, "diffs");
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      fprintf(stderr, "  differs: %s\n", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    MW_CHECK_INT(n, 0);
    lua_pop(L, 2);
  }
  lua_close(L);
}

/* The string metatable's __index is the string table: method calls on a
 * string use the replacements too. */
static void test_method_calls_use_it(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  mw_lpattern_install(L);
  MW_CHECK(luaL_dostring(L, "return ('a').find == string.find, ('x=1'):match('(%w)=(%d)')") ==
           LUA_OK);
  MW_CHECK(lua_toboolean(L, -3));
  MW_CHECK_STR(lua_tostring(L, -2), "x");
  MW_CHECK_STR(lua_tostring(L, -1), "1");
  lua_close(L);
}

int main(void) {
  MW_RUN(test_same_as_lua);
  MW_RUN(test_method_calls_use_it);
  return mw_test_done();
}
