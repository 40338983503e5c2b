-- Specs for moonwire.interceptors.rate_limit over the process-wide buckets.
local rate_limit = require "moonwire.interceptors.rate_limit"

local function call(i, c)
  local ok, err = pcall(i.call, {}, c, function() return {} end)
  return ok, err
end
local function ctx(t)
  t.metadata = t.metadata or {}; t.values = t.values or {}; t.method = t.method or "/a.B/C"
  return t
end

describe("moonwire.interceptors.rate_limit", function()
  it("lets a burst through, then fails with RESOURCE_EXHAUSTED", function()
    local i = rate_limit.new({rate = 0.01, burst = 3, key = "metadata:x-api-key", name = "spec1"}, {})
    local c = ctx {metadata = {["x-api-key"] = "k1"}}
    for _ = 1, 3 do assert.is_true((call(i, c))) end
    local ok, err = call(i, c)
    assert.is_false(ok); assert.equal(8, err.code); assert.truthy(err.message:find "retry in")
    -- another key has its own bucket
    assert.is_true((call(i, ctx {metadata = {["x-api-key"] = "k2"}})))
  end)

  it("keys by peer address without the port, and by identity", function()
    local i = rate_limit.new({rate = 0.01, burst = 1, name = "spec2"}, {})
    assert.is_true((call(i, ctx {peer = "ipv4:10.0.0.1:5000"})))
    assert.is_false((call(i, ctx {peer = "ipv4:10.0.0.1:5001"})))
    assert.is_true((call(i, ctx {peer = "ipv6:[::1]:5001"})))
    local j = rate_limit.new({rate = 0.01, burst = 1, key = "identity", name = "spec3"}, {})
    assert.is_true((call(j, ctx {values = {identity = {subject = "alice"}}})))
    assert.is_false((call(j, ctx {values = {identity = {subject = "alice"}}})))
    assert.is_true((call(j, ctx {values = {identity = {common_name = "bob"}}})))
  end)

  it("refuses bad options", function()
    assert.has_error(function() rate_limit.new({}, {}) end)
    assert.has_error(function() rate_limit.new({rate = 1, key = "cookie"}, {}) end)
    assert.has_error(function() rate_limit.new({rate = 1, burst = 0.5}, {}) end)
    assert.has_error(function() rate_limit.new({rate = 1, per = 1}, {}) end)
  end)
end)
