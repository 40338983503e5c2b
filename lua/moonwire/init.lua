--- moonwire: the Lua API of Moonwire services.
--
--   local mw = require "moonwire"
--   local Greeter = mw.service "helloworld.Greeter"
--   function Greeter.SayHello(req, ctx) return {message = "Hello " .. req.name} end
--
-- See docs/lua-api.md for the whole reference. This module is the facade:
-- each part lives in its own module (moonwire.service, moonwire.status)
-- over the C primitives of moonwire.core.
local core = require "moonwire.core"
local service = require "moonwire.service"
local status = require "moonwire.status"
local health = require "moonwire.health"
local intercept = require "moonwire.intercept"
local details = require "moonwire.details"
local errors = require "moonwire.errors"
local metrics = require "moonwire.metrics"
local sessions = require "moonwire.sessions"

local M = {}

M.version = core.version

--- Status codes: mw.OK, mw.CANCELLED, ..., mw.UNAUTHENTICATED, and the
-- same table as mw.codes (name -> number).
M.codes = status.codes
for name, code in pairs(status.codes) do M[name] = code end

--- The handler table of a service defined in the loaded .proto files.
-- Assign functions named after the service's methods to it.
M.service = service.declare

--- Status errors (moonwire.status, moonwire.errors): mw.fail(code, message
-- [, details]) raises one, mw.status(...) returns it; both also take the name
-- of a catalogue error and its fields: mw.fail("NAME_TAKEN", {name = n}).
M.fail = errors.fail
M.status = errors.status
M.is_status = status.is_status
M.is_cancelled = status.is_cancelled

--- Interceptors (moonwire.intercept): mw.intercept(i) for every method,
-- mw.intercept("pkg.Service", i) for a service's, mw.intercept(
-- "/pkg.Service/Method", i) for one. mw.interceptors.<name>(opts) makes a
-- built-in one (moonwire.interceptors.<name>), as the config's entries do.
M.intercept = intercept.register
M.interceptors = setmetatable({}, {
  __index = function(_, name)
    if type(name) ~= "string" or not name:match "^[%w_]+$" then return nil end
    local ok, mod = pcall(require, "moonwire.interceptors." .. name)
    if not ok or type(mod) ~= "table" or type(mod.new) ~= "function" then return nil end
    return function(opts, env) return mod.new(opts or {}, env or {level = "lua"}) end
  end,
})

--- Wall-clock seconds since the epoch, as a float.
M.now = core.now or os.time

--- A duration as seconds: mw.duration("500ms") -> 0.5, "2s", "1m", "1h",
-- "250us"; a number is taken as seconds. Raises on anything else.
function M.duration(d)
  if type(d) == "number" then
    if d ~= d or d < 0 then error("bad duration: " .. tostring(d), 2) end
    return d
  end
  if type(d) ~= "string" then
    error("bad argument #1 to 'duration' (a string like \"500ms\" expected, got " .. type(d) .. ")", 2)
  end
  local n, unit = d:match "^%s*(%d+%.?%d*)%s*(%a*)%s*$"
  local scale = ({[""] = 1, s = 1, ms = 1e-3, us = 1e-6, m = 60, h = 3600})[unit or ""]
  if not n or not scale then
    error(("bad duration '%s' (expected a number with ms, s, m or h)"):format(d), 2)
  end
  return tonumber(n) * scale
end
--- Rich errors: builders of the standard details (mw.details.ErrorInfo{...},
-- BadRequest, RetryInfo, ...), the error catalogue (mw.errors{...} or
-- mw.errors "errors.yaml"), mw.is_error(err, name) for a catalogue error,
-- and google.rpc.Status bytes (grpc-status-details-bin) to a status object
-- and back: mw.decode_status(bin), mw.encode_status(st).
M.details = details
M.errors = errors.define
M.is_error = errors.is
M.decode_status = status.decode
M.encode_status = status.encode

--- A YAML file beside the calling script, as Lua tables.
M.load_yaml = errors.load_yaml

--- Suspends the calling handler for `seconds`; other calls go on meanwhile.
M.sleep = core.sleep

--- mw.shield(seconds, fn, ...): runs fn to its end even when the call is
-- cancelled meanwhile, for at most `seconds` (docs/lua-api.md).
M.shield = core.shield

--- Outbound calls: mw.client(target, opts) (moonwire.client, docs/lua-api.md).
M.client = require("moonwire.client").new

--- The test harness of specs run by `moonwire test` (moonwire.test): mw.test.
-- client(), mw.test.clock.advance(s), mw.test.reload().
M.test = require "moonwire.test"

--- Pipelines with compensation (moonwire.pipeline): mw.pipeline(name,
-- steps, opts) -> p; p:run(state, ctx) -> state, or nil, err.
M.pipeline = require("moonwire.pipeline").new

--- The server's counters: {live_calls=, generation=, reloads=,
-- reload_failures=, lua_memory= (bytes in this worker's current state)}.
M.stats = core.stats

--- Keeping module state across reloads. Every reload runs the scripts in
-- fresh Lua states. mw.on_reload(fn) registers fn() to run in the old
-- generation when each worker moves to the new one; its return value (nil,
-- booleans, numbers, strings and tables of them) is given to the function
-- the new generation registered with mw.on_restore(fn), before that worker's
-- first call in the new generation.
M.on_reload = core.on_reload
M.on_restore = core.on_restore

--- Health statuses (moonwire.health): mw.health.set(service, status),
-- mw.health.get(service).
M.health = health

--- JSON (moonwire.json): mw.json.decode(text), mw.json.encode(value),
-- mw.json.null, mw.json.array(t). Strict and bounded; see docs/lua-api.md.
M.json = require "moonwire.json"

--- Metrics (moonwire.metrics): mw.metrics.counter(name, help, labels),
-- mw.metrics.gauge(...), mw.metrics.histogram(name, help, labels, buckets).
M.metrics = metrics

--- Draining: mw.on_drain(fn) registers fn() to run on every worker when
-- the server begins to drain (SIGTERM), before the grace period;
-- mw.draining() says whether it has begun. A long stream checks
-- mw.draining() to send a last message or a resume token and return.
M.on_drain = core.on_drain
M.draining = core.draining

--- Shared dicts: mw.shared.NAME is the dict the config's `shared:` section
-- names, the same one on every worker and across reloads, with OpenResty's
-- ngx.shared.DICT methods (d:get, d:set, d:incr, d:lpush...; see
-- docs/lua-api.md). An unknown name raises, listing the configured ones.
M.shared = setmetatable({}, {
  __index = function(t, name)
    if type(name) ~= "string" then
      error("mw.shared: a dict name (a string) expected, got " .. type(name), 2)
    end
    local d, names = core.shared_dict(name)
    if not d then
      if names == "" then
        error(("unknown shared dict '%s' (none is configured: add it to the config's "
          .. "shared: section, e.g. shared: {%s: {size: 1MiB}})"):format(name, name), 2)
      end
      error(("unknown shared dict '%s' (configured: %s)"):format(name, names), 2)
    end
    rawset(t, name, d) -- one lookup per name and state
    return d
  end,
})

--- Stream sessions: mw.sessions.NAME is the room the config's `sessions:`
-- section names, the same on every worker and across reloads: streams join
-- topics, publications reach every joined stream (room:join, room:publish,
-- room:send, room:close, room:list, room:history, room:snapshot; see
-- docs/lua-api.md). An unknown name raises, listing the configured ones.
M.sessions = setmetatable({}, {
  __index = function(t, name)
    if type(name) ~= "string" then
      error("mw.sessions: a room name (a string) expected, got " .. type(name), 2)
    end
    local room = sessions.room(name)
    rawset(t, name, room) -- one lookup per name and state
    return room
  end,
})

--- Logging through the server's log: mw.log.info("message", {key = value}).
M.log = {}
for _, level in ipairs {"debug", "info", "warn", "error"} do
  M.log[level] = function(msg, fields) core.log(level, msg, fields) end
end

return M
