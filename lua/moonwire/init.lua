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
local metrics = require "moonwire.metrics"

local M = {}

M.version = core.version

--- Status codes: mw.OK, mw.CANCELLED, ..., mw.UNAUTHENTICATED, and the
-- same table as mw.codes (name -> number).
M.codes = status.codes
for name, code in pairs(status.codes) do M[name] = code end

--- The handler table of a service defined in the loaded .proto files.
-- Assign functions named after the service's methods to it.
M.service = service.declare

M.fail = status.fail
M.status = status.status
M.is_status = status.is_status
M.is_cancelled = status.is_cancelled

--- Suspends the calling handler for `seconds`; other calls go on meanwhile.
M.sleep = core.sleep

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

--- Metrics (moonwire.metrics): mw.metrics.counter(name, help, labels),
-- mw.metrics.gauge(...), mw.metrics.histogram(name, help, labels, buckets).
M.metrics = metrics

--- Draining: mw.on_drain(fn) registers fn() to run on every worker when
-- the server begins to drain (SIGTERM), before the grace period;
-- mw.draining() says whether it has begun. A long stream checks
-- mw.draining() to send a last message or a resume token and return.
M.on_drain = core.on_drain
M.draining = core.draining

--- Logging through the server's log: mw.log.info("message", {key = value}).
M.log = {}
for _, level in ipairs {"debug", "info", "warn", "error"} do
  M.log[level] = function(msg, fields) core.log(level, msg, fields) end
end

return M
