--- moonwire.intercept: interceptors, registered from Lua or the config and
-- composed around handlers once, at bind time (moonwire.service).
--
-- An interceptor is a table with any of call(req, ctx, next), recv(msg, ctx)
-- and send(msg, ctx) (a function f means {call = f}); see docs/lua-api.md.
-- The chain of a method is, outermost first: global, service, method
-- interceptors, each level's config entries before its Lua ones. Each
-- interceptor is one layer of the onion: its recv sees the request before
-- its call does, its send sees the response its call returned. For the
-- streamed directions the per-message hooks run in a stream wrapper the
-- handler gets in place of the stream: recv hooks outermost first (the
-- order the message travels in), send hooks innermost first.
--
-- A method no interceptor applies to binds the handler itself; one whose
-- interceptors have no per-message hooks for a streamed direction gets the
-- real stream. Nothing of this runs per call unless an interceptor applies.
local core = require "moonwire.core"

local getinfo = debug.getinfo
local assert, type, error, xpcall, setmetatable, getmetatable, pairs, ipairs, tostring, require, pcall =
  assert, type, error, xpcall, setmetatable, getmetatable, pairs, ipairs, tostring, require, pcall
local concat = table.concat

local M = {}

--- Raises "unknown option 'k' (a, b, c)" for a key of opts not in names
-- (a list, in the order the message shows): the check every built-in
-- interceptor makes of its options.
function M.check_options(opts, names)
  for k in pairs(opts) do
    local known = false
    for _, n in ipairs(names) do
      if k == n then known = true; break end
    end
    if not known then
      error(("unknown option '%s' (%s)"):format(tostring(k), concat(names, ", ")), 0)
    end
  end
end

local global = {}   -- {i = interceptor, where = "file:line"}
local services = {} -- "pkg.Service" -> list
local methods = {}  -- "/pkg.Service/Method" -> list

local function where(level)
  local info = getinfo(level + 1, "Sl")
  return info and ("%s:%d"):format(info.short_src, info.currentline or 0) or "?"
end

--- An interceptor in its table form, or nil and what is wrong with it.
function M.normalize(i)
  if type(i) == "function" then return {call = i} end
  if type(i) ~= "table" then
    return nil, "an interceptor must be a table or a function, not a " .. type(i)
  end
  local any = false
  for _, k in ipairs {"call", "recv", "send"} do
    local f = i[k]
    if f ~= nil then
      if type(f) ~= "function" then
        return nil, ("the interceptor's %s must be a function, not a %s"):format(k, type(f))
      end
      any = true
    end
  end
  if not any then return nil, "an interceptor needs at least one of call, recv and send" end
  return i
end

--- mw.intercept(i), mw.intercept("pkg.Service", i),
-- mw.intercept("/pkg.Service/Method", i). Names are checked against the
-- schema when the handlers are bound (a load error with this file:line).
local sealed = false

--- Called once the handlers are bound: later registrations would apply to
-- nothing, so they raise.
function M.seal() sealed = true end

function M.register(a, b)
  if sealed then
    error("mw.intercept must be called while the scripts load, not from a handler", 2)
  end
  local target, i
  if b == nil then i = a else target, i = a, b end
  local norm, problem = M.normalize(i)
  if not norm then error("bad argument to 'intercept': " .. problem, 2) end
  local e = {i = norm, where = where(2)}
  if target == nil then
    global[#global + 1] = e
  elseif type(target) ~= "string" or target == "" then
    error("bad argument #1 to 'intercept' (a service name or a method path expected)", 2)
  elseif target:sub(1, 1) == "/" then
    if not target:match "^/[^/]+/[^/]+$" then
      error(("bad argument #1 to 'intercept': '%s' is not a method path " ..
             "(expected \"/package.Service/Method\")"):format(target), 2)
    end
    local l = methods[target] or {}
    methods[target] = l
    l[#l + 1] = e
  else
    local l = services[target] or {}
    services[target] = l
    l[#l + 1] = e
  end
end

--- What a bind checks: every service and method named exists. lookup(name)
-- -> names, index (as core.methods). Returns a list of problems.
function M.check(lookup)
  local problems = {}
  -- (core.methods gives empty lists for a service the schema lacks)
  local function known(name)
    local names, index = lookup(name)
    if names and names[1] ~= nil then return names, index end
  end
  for name, l in pairs(services) do
    if not known(name) then
      problems[#problems + 1] = ("%s: mw.intercept: no service '%s' in the loaded .proto files")
        :format(l[1].where, name)
    end
  end
  for path, l in pairs(methods) do
    local svc, m = path:match "^/([^/]+)/([^/]+)$"
    local names, index = known(svc)
    if not names then
      problems[#problems + 1] = ("%s: mw.intercept: no service '%s' in the loaded .proto files")
        :format(l[1].where, svc)
    elseif not index[m] then
      problems[#problems + 1] = ("%s: mw.intercept: %s has no method '%s' (methods: %s)")
        :format(l[1].where, svc, m, concat(names, ", "))
    end
  end
  return problems
end

--- Instantiates the config's entries ({name=, opts=, where=} each) of one
-- level: moonwire.interceptors.<name>.new(opts, env). Problems (an unknown
-- name, options the interceptor refuses) are added to `problems` with the
-- entry's file:line:column.
function M.from_config(entries, env, problems)
  local out = {}
  for _, e in ipairs(entries or {}) do
    local ok, mod = pcall(require, "moonwire.interceptors." .. e.name)
    if not ok or type(mod) ~= "table" or type(mod.new) ~= "function" then
      problems[#problems + 1] = ("%s: unknown interceptor '%s'"):format(e.where, e.name)
    else
      local ok2, i = pcall(mod.new, e.opts or {}, env)
      local norm, problem
      if ok2 then norm, problem = M.normalize(i) end
      -- A setting that makes an interceptor (methods.PATH.idempotency) is
      -- named as the config names it.
      local what = e.label or ("interceptor '" .. e.name .. "'")
      if not ok2 then
        problems[#problems + 1] = ("%s: %s: %s"):format(e.where, what, tostring(i))
      elseif not norm then
        problems[#problems + 1] = ("%s: %s: %s"):format(e.where, what, problem)
      else
        if norm.name == nil then norm.name = e.name end
        out[#out + 1] = {i = norm, where = e.where}
      end
    end
  end
  return out
end

-- --- composition -------------------------------------------------------------

-- Errors leaving next() are re-raised as they are; the C message handler
-- notes where a non-status error was first raised, so that the log's
-- traceback points there and not at an interceptor's re-raise.
local keep = core.keep_traceback or function(e) return e end
local function rethrow(ok, ...)
  if ok then return ... end
  error((...), 0)
end
local function guard(f)
  return function(req, ctx) return rethrow(xpcall(f, keep, req, ctx)) end
end

-- The stream of each streaming call, by its ctx, for the innermost layer
-- (the chain is built once; the stream is per call).
local streams = setmetatable({}, {__mode = "k"})

-- The wrapper's metatable for one method: recvs outermost first, sends
-- innermost first. w[1] is the real stream, w[2] the ctx.
local function wrapper_mt(recvs, sends)
  local m = {}
  local forward = {}
  function m.recv(w)
    local msg = w[1]:recv()
    if msg == nil then return nil end
    local ctx = w[2]
    for k = 1, #recvs do msg = recvs[k](msg, ctx) or msg end
    return msg
  end
  function m.send(w, msg)
    local ctx = w[2]
    for k = 1, #sends do msg = sends[k](msg, ctx) or msg end
    return w[1]:send(msg)
  end
  function m.iter(w)
    return function() return m.recv(w) end
  end
  return {
    __name = "moonwire.stream_wrapper",
    __index = function(w, k)
      local f = m[k]
      if f then return f end
      -- Whatever else the real stream offers, with the real one as self.
      f = forward[k]
      if f then return f end
      local v = w[1][k]
      if type(v) ~= "function" then return v end
      f = function(self, ...)
        if self == w or (type(self) == "table" and getmetatable(self) == getmetatable(w)) then
          return v(self[1], ...)
        end
        return v(self, ...)
      end
      forward[k] = f
      return f
    end,
  }
end

--- The function to bind for one method: the handler itself when chain is
-- empty, else the handler wrapped in the chain (a list of interceptors,
-- outermost first). kind: "unary", "server_stream",
-- "client_stream" or "bidi_stream".
function M.compose(handler, kind, chain)
  if #chain == 0 then return handler end
  do -- plain functions and tables alike (bind time only)
    local norm = {}
    for k, i in ipairs(chain) do norm[k] = assert(M.normalize(i)) end
    chain = norm
  end
  local streamed_in = kind == "client_stream" or kind == "bidi_stream"
  local streamed_out = kind == "server_stream" or kind == "bidi_stream"
  local recvs, sends = {}, {}
  for _, i in ipairs(chain) do
    if streamed_in and i.recv then recvs[#recvs + 1] = i.recv end
  end
  for k = #chain, 1, -1 do
    local i = chain[k]
    if streamed_out and i.send then sends[#sends + 1] = i.send end
  end
  local mt = (#recvs > 0 or #sends > 0) and wrapper_mt(recvs, sends) or nil

  -- The innermost step: the handler, with the stream (or its wrapper).
  local inner
  if kind == "unary" then
    inner = handler
  elseif kind == "server_stream" then
    inner = function(req, ctx)
      local s = streams[ctx]
      if s == nil then error("next() must be given the call's ctx", 2) end
      if mt then s = setmetatable({s, ctx}, mt) end
      return handler(req, s, ctx)
    end
  else
    inner = function(_, ctx)
      local s = streams[ctx]
      if s == nil then error("next() must be given the call's ctx", 2) end
      if mt then s = setmetatable({s, ctx}, mt) end
      return handler(s, ctx)
    end
  end

  -- One layer per interceptor, from the inside out.
  local run = inner
  for k = #chain, 1, -1 do
    local i = chain[k]
    local call = i.call
    local recv = not streamed_in and i.recv or nil
    local send = not streamed_out and i.send or nil
    local nxt = run
    local guarded = call and guard(nxt)
    if call and not recv and not send then
      run = function(req, ctx) return call(req, ctx, guarded) end
    else
      run = function(req, ctx)
        if recv then req = recv(req, ctx) or req end
        local res
        if call then res = call(req, ctx, guarded) else res = nxt(req, ctx) end
        if send and type(res) == "table" then res = send(res, ctx) or res end
        return res
      end
    end
  end

  if kind == "unary" then return run end
  if kind == "server_stream" then
    return function(req, stream, ctx)
      streams[ctx] = stream
      return run(req, ctx)
    end
  end
  return function(stream, ctx)
    streams[ctx] = stream
    return run(nil, ctx)
  end
end

--- The chain of one method, outermost first: config entries before Lua
-- ones at each level, then the innermost settings (the config's
-- idempotency: of the method, else of its service), next to the handler.
-- cfg: {global=, services=, methods=, innermost=} of instantiated entries
-- (from_config), or nil.
function M.chain(service, path, cfg)
  local out = {}
  local function add(l)
    for _, e in ipairs(l or {}) do out[#out + 1] = e.i end
  end
  cfg = cfg or {}
  add(cfg.global)
  add(global)
  add(cfg.services and cfg.services[service])
  add(services[service])
  add(cfg.methods and cfg.methods[path])
  add(methods[path])
  local inner = cfg.innermost
  if inner then add(inner[path] or inner[service]) end
  return out
end

--- Whether any interceptor was registered from Lua (for tools and tests).
function M.registered()
  local n = #global
  for _, l in pairs(services) do n = n + #l end
  for _, l in pairs(methods) do n = n + #l end
  return n
end

return M
