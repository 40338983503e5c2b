--- The built-in health service, grpc.health.v1.Health (on unless the
-- config says `health: false`). Statuses come from mw.health
-- (lua/moonwire/health.lua), shared by every worker.
--
-- Check answers the status now, or NOT_FOUND for a name nobody knows.
-- Watch sends the status at once and again at every change; an unknown
-- name is SERVICE_UNKNOWN with the stream left open, so a service that
-- appears with a reload is reported when it does. A status set again to
-- what it was sends nothing. When the server drains, Watch reports
-- NOT_SERVING; once connections are told to go away the stream ends (OK),
-- so that a watching client does not hold the drain for its whole grace.
local mw = require "moonwire"

local Health = mw.service "grpc.health.v1.Health"

function Health.Check(req)
  local status = mw.health.get(req.service)
  if not status then mw.fail(mw.NOT_FOUND, "unknown service " .. req.service) end
  return {status = status}
end

function Health.Watch(req, stream)
  local last
  while true do
    local status, version, closing = mw.health.get(req.service)
    status = status or "SERVICE_UNKNOWN"
    if status ~= last then
      stream:send {status = status}
      last = status
    end
    if closing then return end
    mw.health.wait(version)
  end
end
