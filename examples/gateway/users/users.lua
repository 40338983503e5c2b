-- The users backend. Each lookup takes DELAY seconds, standing in for a
-- slow database, so that the gateway's parallel calls can be seen.
local mw = require "moonwire"
local Users = mw.service "users.Users"

local DELAY = 0.2 -- seconds per lookup

local users = {
  ["u1"] = {id = "u1", name = "Ada Lovelace", email = "ada@example.org"},
  ["u2"] = {id = "u2", name = "Alan Turing", email = "alan@example.org"},
}

function Users.Get(req, ctx)
  -- A caller that gives up (cancels, or its deadline passes) stops the
  -- sleep below; the log line shows that the cancellation reached us.
  ctx:on_cancel(function()
    mw.log.info("users.Get stopped early", {
      id = req.id, why = ctx:remaining() > 0 and "cancelled" or "deadline"})
  end)
  mw.sleep(DELAY)
  local u = users[req.id]
  if not u then mw.fail(mw.NOT_FOUND, "no user " .. req.id) end
  return u
end

return Users
