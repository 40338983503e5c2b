-- moonwire.health over the real board of moonwire.core (no server runs in
-- the spec, so waits are not exercised here: tests/unit/lua/test_co.c and
-- tests/e2e/test_health.py do that).
local health = require "moonwire.health"

describe("moonwire.health", function()
  it("reports the whole server as SERVING and unknown names as nil", function()
    assert.are.equal("SERVING", (health.get("")))
    assert.is_nil((health.get("spec.Unknown")))
  end)

  it("reports what was set, and the default again once cleared", function()
    health.set("spec.db", "NOT_SERVING")
    assert.are.equal("NOT_SERVING", (health.get("spec.db")))
    health.set("spec.db", "SERVING")
    assert.are.equal("SERVING", (health.get("spec.db")))
    health.set("spec.db", "UNKNOWN")
    assert.are.equal("UNKNOWN", (health.get("spec.db")))
    health.set("spec.db", nil)
    assert.is_nil((health.get("spec.db")))
    health.set("", "NOT_SERVING")
    assert.are.equal("NOT_SERVING", (health.get("")))
    health.set("", nil)
    assert.are.equal("SERVING", (health.get("")))
  end)

  it("moves its version only on a change", function()
    local _, v1 = health.get("spec.v")
    health.set("spec.v", "SERVING")
    local _, v2 = health.get("spec.v")
    assert.is_true(v2 > v1)
    health.set("spec.v", "SERVING")
    local _, v3 = health.get("spec.v")
    assert.are.equal(v2, v3)
    health.set("spec.v", nil)
  end)

  it("raises on misuse", function()
    assert.has_error(function() health.set("x", "HEALTHY") end,
      'bad argument #2 to \'set\' ("SERVING", "NOT_SERVING", "UNKNOWN" or nil expected, got HEALTHY)')
    assert.has_error(function() health.set(42, "SERVING") end,
      "bad argument #1 to 'set' (string expected, got number)")
    assert.has_error(function() health.get(nil) end,
      "bad argument #1 to 'get' (string expected, got nil)")
    assert.has_error(function() health.set("x", 1) end)
  end)
end)
