-- Specs for lua/moonwire (the library handlers require), run with busted
-- under lua5.4 against build/lua/moonwire/core.so.
local mw = require "moonwire"

describe("moonwire", function()
  it("exposes every gRPC status code by name", function()
    assert.are.equal(0, mw.OK)
    assert.are.equal(1, mw.CANCELLED)
    assert.are.equal(3, mw.INVALID_ARGUMENT)
    assert.are.equal(4, mw.DEADLINE_EXCEEDED)
    assert.are.equal(5, mw.NOT_FOUND)
    assert.are.equal(12, mw.UNIMPLEMENTED)
    assert.are.equal(13, mw.INTERNAL)
    assert.are.equal(16, mw.UNAUTHENTICATED)
    local n = 0
    for _ in pairs(mw.codes) do n = n + 1 end
    assert.are.equal(17, n)
  end)

  it("has a version", function()
    assert.is_string(mw.version)
    assert.truthy(mw.version:match("^%d+%.%d+%.%d+"))
  end)

  describe("fail", function()
    it("raises a status object with code and message", function()
      local ok, err = pcall(mw.fail, mw.NOT_FOUND, "no such user")
      assert.is_false(ok)
      assert.is_true(mw.is_status(err))
      assert.are.equal(mw.NOT_FOUND, err.code)
      assert.are.equal("no such user", err.message)
      assert.are.equal("NOT_FOUND: no such user", tostring(err))
    end)

    it("accepts code names in any case", function()
      local _, err = pcall(mw.fail, "invalid_argument", "bad")
      assert.are.equal(mw.INVALID_ARGUMENT, err.code)
    end)

    it("rejects OK, unknown names and out-of-range codes as misuse", function()
      local ok, err = pcall(mw.fail, mw.OK, "fine")
      assert.is_false(ok)
      assert.is_false(mw.is_status(err))
      assert.matches("not OK", err)
      ok, err = pcall(mw.fail, "NO_SUCH_CODE", "x")
      assert.is_false(ok)
      assert.matches("unknown status code", err)
      ok, err = pcall(mw.fail, 17, "x")
      assert.is_false(ok)
      assert.matches("out of range", err)
    end)
  end)

  describe("status", function()
    it("builds an error object without raising", function()
      local st = mw.status(mw.ABORTED, "conflict")
      assert.is_true(mw.is_status(st))
      assert.are.equal(mw.ABORTED, st.code)
      assert.is_false(mw.is_cancelled(st))
    end)

    it("does not mistake plain tables or strings for status objects", function()
      assert.is_false(mw.is_status({code = 5, message = "x"}))
      assert.is_false(mw.is_status("NOT_FOUND: x"))
      assert.is_false(mw.is_cancelled({cancelled = true}))
    end)
  end)

  describe("service", function()
    it("returns one handler table per service name", function()
      local a = mw.service "spec.Alpha"
      local b = mw.service "spec.Alpha"
      assert.are.equal(a, b)
      assert.are_not.equal(a, mw.service "spec.Beta")
    end)

    it("needs a name", function()
      assert.has_error(function() mw.service() end)
    end)
  end)

  describe("sleep", function()
    it("refuses to run outside a handler", function()
      local ok, err = pcall(mw.sleep, 0.01)
      assert.is_false(ok)
      assert.matches("from a handler", err)
    end)
  end)

  describe("shield", function()
    it("refuses to run outside a handler", function()
      local ok, err = pcall(mw.shield, 1, function() end)
      assert.is_false(ok)
      assert.matches("from the handler itself", err)
    end)

    it("checks its window and function", function()
      assert.has_error(function() mw.shield(0, function() end) end)
      assert.has_error(function() mw.shield(3601, function() end) end)
      assert.has_error(function() mw.shield(1, "nope") end)
    end)
  end)

  describe("log", function()
    it("has the four levels", function()
      for _, level in ipairs {"debug", "info", "warn", "error"} do
        assert.is_function(mw.log[level])
      end
    end)
  end)
end)
