-- shop/payments.lua: Charge has a side effect (it counts the charges this
-- worker made), so running it twice shows. moonwire.yaml makes it
-- idempotent: a retry with the same idempotency-key gets the same receipt,
-- and the count does not move.
local mw = require "moonwire"
local Payments = mw.service "shop.Payments"

local charges = 0   -- module state: this worker's own

function Payments.Charge(req, ctx)
  if req.cents <= 0 then mw.fail(mw.INVALID_ARGUMENT, "cents must be positive") end
  if req.card == "declined" then
    -- Kept and replayed like a success: the bank said no once.
    mw.fail(mw.FAILED_PRECONDITION, "the card was declined")
  end
  charges = charges + 1
  return {
    charge_id = ("ch_%d_%d"):format(math.floor(mw.now() * 1000), charges),
    cents = req.cents,
    charges = charges,
  }
end

return Payments
