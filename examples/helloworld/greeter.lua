local mw = require "moonwire"

local Greeter = mw.service "helloworld.Greeter"

function Greeter.SayHello(req, ctx)
  return {message = "Hello " .. req.name}
end

return Greeter
