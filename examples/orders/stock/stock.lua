-- The warehouse: stock reservations and shipping, in memory.
local mw = require "moonwire"
local Stock = mw.service "stock.Stock"
local Shipping = mw.service "stock.Shipping"

local on_hand = {tea = 10, teapot = 2}
local held = {} -- order_id -> {sku =, qty =}

function Stock.Reserve(req, ctx)
  if (on_hand[req.sku] or 0) < req.qty then
    mw.fail(mw.FAILED_PRECONDITION, ("not enough %s in stock"):format(req.sku))
  end
  on_hand[req.sku] = on_hand[req.sku] - req.qty
  held[req.order_id] = {sku = req.sku, qty = req.qty}
  mw.log.info("reserved", {order_id = req.order_id, sku = req.sku, qty = req.qty})
  return {id = "r-" .. req.order_id}
end

-- Idempotent, as an undo must be: releasing twice gives back once.
function Stock.Release(req, ctx)
  local h = held[req.order_id]
  if h then
    on_hand[h.sku] = on_hand[h.sku] + h.qty
    held[req.order_id] = nil
    mw.log.info("released", {order_id = req.order_id, sku = h.sku, qty = h.qty})
  end
  return {id = "r-" .. req.order_id}
end

function Shipping.Ship(req, ctx)
  if req.address == "Atlantis" then
    mw.fail(mw.FAILED_PRECONDITION, "we do not ship to Atlantis")
  end
  mw.log.info("shipped", {order_id = req.order_id, address = req.address})
  return {id = "s-" .. req.order_id}
end
