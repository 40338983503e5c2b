--- moonwire: the Lua API of Moonwire services.
--
--   local mw = require "moonwire"
--   local Greeter = mw.service "helloworld.Greeter"
--   function Greeter.SayHello(req, ctx) return {message = "Hello " .. req.name} end
--
-- See docs/lua-api.md for the whole reference.
local core = require "moonwire.core"

local M = {}

M.version = core.version

--- Status codes: mw.OK, mw.CANCELLED, ..., mw.UNAUTHENTICATED, and the
-- same table as mw.codes (name -> number).
M.codes = core.codes
for name, code in pairs(core.codes) do M[name] = code end

--- The handler table of a service defined in the loaded .proto files.
-- Assign functions named after the service's methods to it.
M.service = core.service

--- Ends the call with a status: mw.fail(mw.NOT_FOUND, "no such user").
-- code is a number or a name ("NOT_FOUND"). Never returns.
M.fail = core.fail

--- A status error object, to raise later with error(): {code=, message=}.
M.status = core.status

--- True when err is a status error object (from mw.fail, mw.status or a
-- cancelled wait).
M.is_status = core.is_status

--- True when err is the error a wait raises because the call was cancelled
-- or its deadline passed.
function M.is_cancelled(err)
  return core.is_status(err) and err.cancelled == true
end

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

--- Logging through the server's log: mw.log.info("message", {key = value}).
M.log = {}
for _, level in ipairs {"debug", "info", "warn", "error"} do
  M.log[level] = function(msg, fields) core.log(level, msg, fields) end
end

return M
