-- Specs for lua/moonwire/status.lua.
local status = require "moonwire.status"

describe("moonwire.status", function()
  it("tells the cancelled error from other status errors", function()
    local st = status.status("CANCELLED", "gone")
    assert.is_true(status.is_status(st))
    assert.is_false(status.is_cancelled(st))
    st.cancelled = true
    assert.is_true(status.is_cancelled(st))
    assert.is_false(status.is_cancelled({code = 1, cancelled = true}))
    assert.is_false(status.is_cancelled(nil))
  end)

  it("names every code once", function()
    local seen = {}
    for name, code in pairs(status.codes) do
      assert.is_nil(seen[code], name)
      seen[code] = name
    end
    for code = 0, 16 do assert.is_string(seen[code]) end
  end)
end)
