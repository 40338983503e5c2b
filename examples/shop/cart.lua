-- shop/cart.lua
local mw = require "moonwire"
local Cart = mw.service "shop.Cart"

local items = 0

function Cart.Add(item, ctx)
  if item.quantity <= 0 then
    mw.fail(mw.INVALID_ARGUMENT, "quantity must be positive")
  end
  items = items + item.quantity
  return {items = items}
end

function Cart.Watch(item, stream, ctx)
  for _ = 1, 3 do
    stream:send{items = items}
    mw.sleep(1)
  end
end

return Cart
