-- The warehouse: stock reservations and shipping. The counts live in a
-- shared dict (moonwire.yaml: one for every worker; redis.yaml: one in
-- Redis for every instance), so a release on any worker gives back what a
-- reserve on another took.
local mw = require "moonwire"
local Stock = mw.service "stock.Stock"
local Shipping = mw.service "stock.Shipping"

local stock = mw.shared.stock

-- The starting stock; add leaves a count that is already there (another
-- worker, an earlier reload, another instance on the same Redis).
for sku, n in pairs {tea = 10, teapot = 2} do stock:add("on_hand:" .. sku, n) end

local function unavailable(err) mw.fail(mw.UNAVAILABLE, "stock: " .. tostring(err)) end

function Stock.Reserve(req, ctx)
  local key = "on_hand:" .. req.sku
  -- Taken first, given back when it went below zero: two reservations
  -- racing for the last teapot cannot both get it.
  local left, err = stock:incr(key, -req.qty)
  if not left then
    if err == "not found" then
      mw.fail(mw.FAILED_PRECONDITION, ("not enough %s in stock"):format(req.sku))
    end
    unavailable(err)
  end
  if left < 0 then
    stock:incr(key, req.qty)
    mw.fail(mw.FAILED_PRECONDITION, ("not enough %s in stock"):format(req.sku))
  end
  local ok, serr = stock:set("held:" .. req.order_id, req.sku .. " " .. req.qty, 86400)
  if not ok then
    stock:incr(key, req.qty)
    unavailable(serr)
  end
  mw.log.info("reserved", {order_id = req.order_id, sku = req.sku, qty = req.qty})
  return {id = "r-" .. req.order_id}
end

-- Idempotent, as an undo must be: releasing twice gives back once (the
-- first release to count 1 on the order's marker does it).
function Stock.Release(req, ctx)
  local held, err = stock:get("held:" .. req.order_id)
  if held == nil and err then unavailable(err) end
  if held then
    local n, ierr = stock:incr("released:" .. req.order_id, 1, 0, 86400)
    if not n then unavailable(ierr) end
    if n == 1 then
      local sku, qty = held:match "^(%S+) (%d+)$"
      stock:incr("on_hand:" .. sku, tonumber(qty))
      mw.log.info("released", {order_id = req.order_id, sku = sku, qty = tonumber(qty)})
    end
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
