-- Specs for moonwire.interceptors.validate.
local validate = require "moonwire.interceptors.validate"

describe("moonwire.interceptors.validate", function()
  local i = validate.new({fn = function(msg)
    if (msg.n or 0) <= 0 then return false, {{field = "n", description = "must be positive"}} end
    return true
  end, responses = true}, {})

  it("passes valid messages and fails others with INVALID_ARGUMENT", function()
    assert.is_nil(i.recv({n = 1}, {}))
    local ok, err = pcall(i.recv, {n = 0}, {})
    assert.is_false(ok); assert.equal(3, err.code)
    assert.equal("invalid request: n: must be positive", err.message)
    ok, err = pcall(i.send, {n = 0}, {})
    assert.is_false(ok); assert.equal(13, err.code)
  end)

  it("takes a string as one violation", function()
    local v = validate.new({fn = function() return false, "no" end}, {})
    local ok, err = pcall(v.recv, {}, {})
    assert.is_false(ok); assert.equal("invalid request: no", err.message)
    assert.is_nil(v.send)
  end)

  it("resolves a rule from a module", function()
    package.loaded.spec_rules = {check = function(m) return m.ok end}
    local v = validate.new({rule = "spec_rules.check"}, {})
    assert.is_nil(v.recv({ok = true}, {}))
    assert.is_false((pcall(v.recv, {ok = false}, {})))
    assert.has_error(function() validate.new({rule = "spec_rules.nope"}, {}) end, "rule 'spec_rules.nope': module 'spec_rules' has no function 'nope'")
    assert.has_error(function() validate.new({rule = "nodot"}, {}) end)
    assert.has_error(function() validate.new({}, {}) end)
  end)
end)
