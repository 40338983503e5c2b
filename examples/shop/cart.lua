-- shop/cart.lua
local mw = require "moonwire"
local Cart = mw.service "shop.Cart"

local prices = {tea = 450, coffee = 600}   -- cents

function Cart.Price(item, ctx)
  local price = prices[item.sku]
  if not price then mw.fail(mw.NOT_FOUND, "no such item: " .. item.sku) end
  if item.quantity <= 0 then
    mw.fail(mw.INVALID_ARGUMENT, "quantity must be positive")
  end
  return {cents = price * item.quantity}
end

function Cart.Countdown(item, stream, ctx)
  for left = item.quantity, 1, -1 do
    stream:send{left = left}
    mw.sleep(0.5)               -- only this call waits; the server goes on
  end
end

return Cart
