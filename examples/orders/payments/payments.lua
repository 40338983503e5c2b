-- Payments: charges and refunds, kept in a shared dict (moonwire.yaml: one
-- for every worker; redis.yaml: in Redis, for every instance).
local mw = require "moonwire"
local Payments = mw.service "payments.Payments"

local charges = mw.shared.charges

local function unavailable(err) mw.fail(mw.UNAVAILABLE, "payments: " .. tostring(err)) end

function Payments.Charge(req, ctx)
  if req.cents <= 0 then mw.fail(mw.INVALID_ARGUMENT, "cents must be positive") end
  local ok, err = charges:set("charged:" .. req.order_id, req.cents, 86400)
  if not ok then unavailable(err) end
  mw.log.info("charged", {order_id = req.order_id, cents = req.cents})
  return {id = "p-" .. req.order_id}
end

-- Idempotent: a second refund of the same order refunds nothing (the first
-- to count 1 on the order's marker refunds).
function Payments.Refund(req, ctx)
  local cents, err = charges:get("charged:" .. req.order_id)
  if cents == nil and err then unavailable(err) end
  if cents then
    local n, ierr = charges:incr("refunded:" .. req.order_id, 1, 0, 86400)
    if not n then unavailable(ierr) end
    if n == 1 then mw.log.info("refunded", {order_id = req.order_id, cents = cents}) end
  end
  return {id = "p-" .. req.order_id}
end
