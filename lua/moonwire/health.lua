--- moonwire.health: the statuses the built-in health service reports
-- (grpc.health.v1.Health, services/health.lua), shared by every worker and
-- kept across reloads.
--
--   mw.health.set("shop.Cart", "NOT_SERVING")  -- or "SERVING", or nil to
--                                               -- go back to the default
--   local status = mw.health.get("shop.Cart")   -- "SERVING", ... or nil
--
-- Which status a name has is decided here: while the server drains,
-- everything known is NOT_SERVING; otherwise a status set with
-- mw.health.set wins; otherwise every service the current generation serves,
-- and "" (the whole server), are SERVING. Any other name is unknown (nil).
local core = require "moonwire.core"

local M = {}

local names = {[0] = "UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"}
local numbers = {UNKNOWN = 0, SERVING = 1, NOT_SERVING = 2}

--- The status of a service, or nil when the name is unknown; the board's
-- version, for mw.health.wait; and whether the server is closing (its
-- connections told to go away: Watch streams end then).
function M.get(service)
  if type(service) ~= "string" then
    error("bad argument #1 to 'get' (string expected, got " .. type(service) .. ")", 2)
  end
  local explicit, served, draining, version = core.health_lookup(service)
  local status
  if explicit then
    status = names[explicit]
  elseif served or service == "" then
    status = "SERVING"
  end
  if status and draining > 0 then status = "NOT_SERVING" end
  return status, version, draining == 2
end

--- Sets the status of a service name (any name: a dependency such as "db"
-- works too); nil removes what was set.
function M.set(service, status)
  if type(service) ~= "string" then
    error("bad argument #1 to 'set' (string expected, got " .. type(service) .. ")", 2)
  end
  local n
  if status ~= nil then
    n = numbers[status]
    if not n then
      error("bad argument #2 to 'set' (\"SERVING\", \"NOT_SERVING\", \"UNKNOWN\" or nil expected, got "
            .. tostring(status) .. ")", 2)
    end
  end
  core.health_set(service, n)
end

--- Waits (in a handler) until anything on the board changes after the
-- version mw.health.get returned.
M.wait = core.health_wait

return M
