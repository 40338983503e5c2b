-- The gateway: one call in, two outbound calls in parallel, one answer.
local mw = require "moonwire"
local Gateway = mw.service "gateway.Gateway"

-- The backends (client.allow in moonwire.yaml must list them). The
-- variables move them elsewhere, e.g. for the tests; the allow-list still
-- decides what may be reached.
local users = mw.client(os.getenv("USERS_ADDR") or "127.0.0.1:50061")
local orders = mw.client(os.getenv("ORDERS_ADDR") or "127.0.0.1:50062")

-- A backend's error becomes this call's status: the same code and details,
-- the message saying which backend it was. DEADLINE_EXCEEDED and CANCELLED
-- come this way too when this call's own deadline passed first (each
-- outbound call's deadline is this call's, less a small margin).
local function fail_from(backend, err)
  err.message = backend .. ": " .. err.message
  mw.fail(err)
end

function Gateway.GetProfile(req, ctx)
  if req.user_id == "" then mw.fail(mw.INVALID_ARGUMENT, "user_id is required") end
  -- Both calls are in flight from here on; waiting for one lets the other
  -- run, so the answer takes as long as the slower backend, not the sum.
  local u = users:start("/users.Users/Get", {id = req.user_id})
  local o = orders:start("/orders.Orders/List", {user_id = req.user_id})
  local user, err = u:wait()
  -- Returning or failing here ends the handler, which cancels the orders
  -- call still in flight: nothing outlives the call that started it.
  if not user then fail_from("users", err) end
  local list, err2 = o:wait()
  if not list then fail_from("orders", err2) end
  local total = 0
  for _, order in ipairs(list.orders) do total = total + order.cents end
  return {user = user, orders = list.orders, total_cents = total}
end

return Gateway
