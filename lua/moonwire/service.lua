--- moonwire.service: services declared in Lua and bound to their methods.
--
-- mw.service(name) returns the handler table of a service the loaded .proto
-- files define; scripts assign functions named after its methods to it.
-- After every service script has run, the runtime calls bind once per
-- worker state: each handler is checked against the schema and one
-- function per method is handed to C. That function is the handler itself;
-- anything that wraps handlers (interceptors) composes here, once, at bind
-- time, so a service without any costs nothing per call.
local core = require "moonwire.core"
local intercept = require "moonwire.intercept"

local getinfo, getlocal = debug.getinfo, debug.getlocal
local pairs, type, tostring = pairs, type, tostring
local concat, sort = table.concat, table.sort

local M = {}

local declared = {} -- service name -> {handlers = table, file = short_src}
local where = {}    -- method path -> "file:line" of its handler, for messages
local order = {}    -- service names in declaration order

--- The handler table of a service (the same table on every call).
function M.declare(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'service' (string expected, got " ..
          (name == nil and "no value" or type(name)) .. ")", 2)
  end
  local d = declared[name]
  if d then return d.handlers end
  local problem = core.service_problem(name)
  if problem then error(problem, 2) end
  local info = getinfo(2, "S")
  d = {handlers = {}, file = info and info.short_src or "?"}
  declared[name] = d
  order[#order + 1] = name
  return d.handlers
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then
      return a < b
    end
    return type(a) < type(b)
  end)
  return keys
end

-- The config's interceptors instantiated, level by level; problems (an
-- unknown name, refused options, a service the schema lacks) are added.
local function config_chain(config, methods, problems)
  local cfg = {services = {}, methods = {}}
  if not config then return cfg end
  local global = config.global
  -- tracing: configured: the trace interceptor, outermost of all.
  local tracing = core.trace_options and core.trace_options()
  if tracing then
    global = {{name = "trace", opts = tracing, where = "tracing"}, table.unpack(global or {})}
  end
  cfg.global = intercept.from_config(global, {level = "global"}, problems)
  for name, entries in pairs(config.services or {}) do
    cfg.services[name] = intercept.from_config(entries, {level = "service", service = name},
                                               problems)
  end
  for path, entries in pairs(config.methods or {}) do
    local svc = path:match "^/([^/]+)/"
    cfg.methods[path] = intercept.from_config(entries,
      {level = "method", service = svc, method = path}, problems)
  end
  -- methods.<path or service>.idempotency: innermost, next to the handler.
  cfg.innermost = {}
  for name, entry in pairs(config.idempotency or {}) do
    local svc = name:match "^/([^/]+)/"
    local env = svc and {level = "method", service = svc, method = name}
                    or {level = "service", service = name}
    cfg.innermost[name] = intercept.from_config({entry}, env, problems)
  end
  return cfg
end

-- Where each kind's handler takes the stream and ctx (parameter positions),
-- and the signature to suggest.
local SHAPES = {
  unary = {ctx = 2, sig = "(req, ctx)", what = "unary"},
  server_stream = {stream = 2, ctx = 3, sig = "(req, stream, ctx)", what = "server-streaming"},
  client_stream = {stream = 1, ctx = 2, sig = "(stream, ctx)", what = "client-streaming"},
  bidi_stream = {stream = 1, ctx = 2, sig = "(stream, ctx)", what = "bidi-streaming"},
}
local REQUEST_NAMES = {req = true, request = true}

-- A handler whose parameter names say it was written for another RPC kind
-- (a `stream`, `ctx` or `req` where this kind passes something else): the
-- message, else nil. Only those names count, so any other naming passes.
local function signature_problem(file, service, method, fn, kind)
  local shape = SHAPES[kind]
  if not shape then return nil end
  local info = getinfo(fn, "Su")
  for i = 1, info.nparams do
    local p = getlocal(fn, i)
    if (p == "stream" and shape.stream ~= i) or (p == "ctx" and shape.ctx ~= i)
        or (REQUEST_NAMES[p] and shape.stream == i) then
      return ("%s:%d: %s.%s is a %s method: its handler takes %s, but parameter %d is named '%s'")
        :format(file, info.linedefined, service, method, shape.what, shape.sig, i, p)
    end
  end
  return nil
end

--- Called by the runtime: bind(method_index, fn) for every handler that
-- names a method of its service, wrapped in the interceptors that apply to
-- it (moonwire.intercept). Returns the problems found, as messages with
-- file and line. methods(service) -> names, index, kinds is the schema's
-- (core.methods; a spec passes its own), config the config's interceptor
-- entries (core.config_interceptors(); a spec passes its own). Afterwards
-- mw.intercept raises, unless seal is false (specs bind several times).
function M.bind(bind, methods, config, seal)
  methods = methods or core.methods
  if config == nil and core.config_interceptors then config = core.config_interceptors() end
  local problems = intercept.check(methods)
  local cfg = config_chain(config, methods, problems)
  -- Outbound settings are read now, while the config is at hand.
  for _, p in ipairs(require("moonwire.client").config_problems()) do
    problems[#problems + 1] = p
  end
  local bound = {} -- method index -> true once a handler is bound to it
  local function bind_one(i, fn)
    bound[i] = true
    bind(i, fn)
  end
  for _, name in ipairs(order) do
    local d = declared[name]
    local names, index, kinds = methods(name)
    for _, k in ipairs(sorted_keys(d.handlers)) do
      local fn = d.handlers[k]
      if type(k) ~= "string" then
        problems[#problems + 1] = ("%s: the handler table of %s has a key that is not a method name")
          :format(d.file, name)
      elseif not index[k] then
        local line = type(fn) == "function" and getinfo(fn, "S").linedefined or 0
        problems[#problems + 1] = ("%s:%d: %s has no method '%s' (methods: %s)")
          :format(d.file, line, name, k, concat(names, ", "))
      elseif type(fn) ~= "function" then
        problems[#problems + 1] = ("%s: handler %s.%s must be a function, not a %s")
          :format(d.file, name, k, type(fn))
      elseif signature_problem(d.file, name, k, fn, kinds and kinds[k] or "unary") then
        problems[#problems + 1] = signature_problem(d.file, name, k, fn, kinds and kinds[k] or "unary")
      else
        where["/" .. name .. "/" .. k] = ("%s:%d"):format(d.file, getinfo(fn, "S").linedefined)
        local chain = intercept.chain(name, "/" .. name .. "/" .. k, cfg)
        bind_one(index[k], intercept.compose(fn, kinds and kinds[k] or "unary", chain))
      end
    end
  end
  -- Stub mode: methods without a handler answer from the stub files
  -- (moonwire.stub), through the same interceptors.
  require("moonwire.stub").bind(bind, methods, bound, function(svc, path, kind, fn)
    where[path] = where[path] or "stubs of " .. path
    return intercept.compose(fn, kind, intercept.chain(svc, path, cfg))
  end, problems)
  if seal ~= false then intercept.seal() end
  return problems
end

--- "file:line" of the handler bound to a method path, or nil: what the
-- runtime names when a handler's reply is not a valid message.
function M.where(path) return where[path] end

--- The services declared so far, in order (for tools and tests).
function M.declared()
  local out = {}
  for i, name in ipairs(order) do out[i] = name end
  return out
end

return M
