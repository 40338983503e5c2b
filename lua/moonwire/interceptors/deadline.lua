--- moonwire.interceptors.deadline: a default and a maximum deadline.
-- A call that arrives without a deadline gets `default` (when set); one
-- whose deadline is further away than `max` has it shortened to `max`.
-- A deadline is only ever shortened (ctx:set_deadline); when it passes the
-- call ends with DEADLINE_EXCEEDED, as if the client had asked for it.
-- Options: default, max: seconds, or durations ("500ms", "2s", "1m").
local mw = require "moonwire"

local check_options = require("moonwire.intercept").check_options

local M = {}

function M.new(opts, env)
  opts = opts or {}
  check_options(opts, {"default", "max"})
  local function seconds(k)
    local v = opts[k]
    if v == nil then return nil end
    local ok, s = pcall(mw.duration, v)
    if not ok or s <= 0 then
      error(("%s must be a positive duration (like 500ms or 2s), not '%s'"):format(k, tostring(v)), 0)
    end
    return s
  end
  local default, max = seconds "default", seconds "max"
  if not default and not max then error("give default, max or both", 0) end
  if default and max and default > max then
    error(("default (%gs) is longer than max (%gs)"):format(default, max), 0)
  end
  local first = default or max
  return {
    name = "deadline",
    call = function(req, ctx, next)
      if ctx.deadline == nil then
        ctx:set_deadline(first)
      elseif max then
        ctx:set_deadline(max) -- ignored when the client's is sooner
      end
      return next(req, ctx)
    end,
  }
end

return M
