-- Payments: charges and refunds, in memory.
local mw = require "moonwire"
local Payments = mw.service "payments.Payments"

local charged = {} -- order_id -> cents

function Payments.Charge(req, ctx)
  if req.cents <= 0 then mw.fail(mw.INVALID_ARGUMENT, "cents must be positive") end
  charged[req.order_id] = req.cents
  mw.log.info("charged", {order_id = req.order_id, cents = req.cents})
  return {id = "p-" .. req.order_id}
end

-- Idempotent: a second refund of the same order refunds nothing.
function Payments.Refund(req, ctx)
  local cents = charged[req.order_id]
  if cents then
    charged[req.order_id] = nil
    mw.log.info("refunded", {order_id = req.order_id, cents = cents})
  end
  return {id = "p-" .. req.order_id}
end
