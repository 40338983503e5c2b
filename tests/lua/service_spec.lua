-- Specs for lua/moonwire/service.lua: declaring services and binding their
-- handlers, with the schema's method lists given by the spec.
local service = require "moonwire.service"

-- The schema as core.methods would give it: names in .proto order, and
-- name -> method index.
local schema = {
  ["spec.Shop"] = {{"Price", "Stock"}, {Price = 0, Stock = 1}},
  ["spec.Other"] = {{"Ping"}, {Ping = 2}},
}
local function methods(name) return table.unpack(schema[name]) end

local function bind_all()
  local bound = {}
  local problems = service.bind(function(i, fn) bound[i] = fn end, methods, nil, false)
  return bound, problems
end

describe("moonwire.service", function()
  it("hands each handler to bind by method index", function()
    local Shop = service.declare "spec.Shop"
    local price = function() return {cents = 1} end
    Shop.Price = price
    local bound, problems = bind_all()
    assert.are.same({}, problems)
    assert.are.equal(price, bound[0])
    assert.is_nil(bound[1]) -- Stock has no handler
  end)

  it("returns the same table for a name and lists services in order", function()
    assert.are.equal(service.declare "spec.Shop", service.declare "spec.Shop")
    service.declare "spec.Other"
    assert.are.same({"spec.Shop", "spec.Other"}, service.declared())
  end)

  it("reports an unknown method with file, line and the methods there are", function()
    local Shop = service.declare "spec.Shop"
    Shop.Prise = function() end
    local _, problems = bind_all()
    assert.are.equal(1, #problems)
    assert.matches("service_spec%.lua:%d+: spec%.Shop has no method 'Prise' %(methods: Price, Stock%)",
                   problems[1])
    Shop.Prise = nil
  end)

  it("reports handlers that are not functions and keys that are not names", function()
    local Other = service.declare "spec.Other"
    Other.Ping = "pong"
    Other[1] = function() end
    local _, problems = bind_all()
    table.sort(problems)
    assert.are.equal(2, #problems)
    assert.matches("handler spec%.Other%.Ping must be a function, not a string", problems[1])
    assert.matches("the handler table of spec%.Other has a key that is not a method name",
                   problems[2])
    Other.Ping, Other[1] = nil, nil
  end)

  it("needs a name", function()
    local ok, err = pcall(service.declare)
    assert.is_false(ok)
    assert.matches("string expected, got no value", err)
  end)
end)
