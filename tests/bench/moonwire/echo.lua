-- bench.Echo in Lua: the same work as every peer's handlers.
local mw = require "moonwire"
local Echo = mw.service "bench.Echo"

function Echo.Unary(req, ctx)
  return req
end

function Echo.ServerStream(req, stream, ctx)
  for _ = 1, req.n do stream:send(req) end
end

function Echo.ClientStream(stream, ctx)
  local n, last = 0, ""
  for msg in stream:iter() do
    n = n + 1
    last = msg.payload
  end
  return {n = n, payload = last}
end

function Echo.Bidi(stream, ctx)
  for msg in stream:iter() do stream:send(msg) end
end

return Echo
