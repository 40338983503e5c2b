-- Run with: moonwire test examples/helloworld
local mw = require "moonwire"

describe("helloworld.Greeter", function()
  local c = mw.test.client()

  it("greets by name", function()
    local res, err = c:call("helloworld.Greeter/SayHello", {name = "Ada"})
    assert.is_nil(err)
    assert.are.equal("Hello Ada", res.message)
  end)
end)
