-- The orders backend. Each query takes DELAY seconds, like users.lua's.
local mw = require "moonwire"
local Orders = mw.service "orders.Orders"

local DELAY = 0.3 -- seconds per query

local orders = {
  u1 = {
    {id = "o-100", item = "tea", cents = 450},
    {id = "o-101", item = "teapot", cents = 2900},
  },
  u2 = {
    {id = "o-200", item = "coffee", cents = 600},
  },
}

function Orders.List(req, ctx)
  ctx:on_cancel(function()
    mw.log.info("orders.List stopped early", {
      user_id = req.user_id, why = ctx:remaining() > 0 and "cancelled" or "deadline"})
  end)
  mw.sleep(DELAY)
  return {orders = orders[req.user_id] or {}}
end

return Orders
