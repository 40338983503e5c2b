-- The order saga: reserve stock, charge, ship; when a step fails, what was
-- done is undone in reverse order (mw.pipeline).
local mw = require "moonwire"
local Orders = mw.service "orders.Orders"

-- The backends (client.allow in moonwire.yaml must list them); the
-- variables move them elsewhere, e.g. for the tests.
local stock = mw.client(os.getenv("STOCK_ADDR") or "127.0.0.1:50071")
local payments = mw.client(os.getenv("PAYMENTS_ADDR") or "127.0.0.1:50072")

-- Each step's `timeout` is its share of the call's deadline; the pipeline
-- hands the step what it may use (capped by what is left) as `t`.
local function item(o) return {order_id = o.order_id, sku = o.sku, qty = o.qty} end
local function pay(o) return {order_id = o.order_id, cents = o.cents} end
local function id_of(res, err) if not res then return nil, err end return res.id end

local place = mw.pipeline("place_order", {
  {name = "reserve", timeout = 0.5,
   run = function(o, ctx, t) return id_of(stock:call("/stock.Stock/Reserve", item(o), {timeout = t})) end,
   undo = function(o, ctx, err, t) return id_of(stock:call("/stock.Stock/Release", item(o), {timeout = t})) end},
  {name = "charge", timeout = 0.5,
   -- A busy payment service is tried again (UNAVAILABLE, by default).
   retry = {max_attempts = 3, initial_backoff = 0.05, max_backoff = 0.2},
   run = function(o, ctx, t) return id_of(payments:call("/payments.Payments/Charge", pay(o), {timeout = t})) end,
   undo = function(o, ctx, err, t) return id_of(payments:call("/payments.Payments/Refund", pay(o), {timeout = t})) end},
  {name = "ship", timeout = 0.5,
   run = function(o, ctx, t)
     return id_of(stock:call("/stock.Shipping/Ship", {order_id = o.order_id, address = o.address},
                             {timeout = t}))
   end},
}, {undo_timeout = 0.5, reserve = 0.5})

function Orders.Place(req, ctx)
  if req.order_id == "" then mw.fail(mw.INVALID_ARGUMENT, "order_id is required") end
  -- The state is the order itself; each step's result lands under its name.
  local state, err = place:run({order_id = req.order_id, sku = req.sku, qty = req.qty,
                                cents = req.cents, address = req.address}, ctx)
  if not state then mw.fail(err) end -- the failing step's status, with the saga's outcome
  return {order_id = req.order_id, reservation = state.reserve, payment = state.charge,
          shipment = state.ship}
end
