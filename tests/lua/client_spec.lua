-- Specs for moonwire.client's policy: retry waits, the error objects, the
-- checks mw.client makes (in a plain lua5.4: no server, so no target is
-- allowed and no protos are loaded).
local client = require "moonwire.client"
local status = require "moonwire.status"
local details = require "moonwire.details"

local policy = {max_attempts = 5, initial_backoff = 0.1, max_backoff = 0.4, multiplier = 2,
                codes = {[14] = true}}

describe("moonwire.client retry_delay", function()
  it("waits what grpc-retry-pushback-ms says", function()
    assert.equal(0.25, client.retry_delay(policy, 1, {trailers = {["grpc-retry-pushback-ms"] = "250"}}))
    assert.equal(0, client.retry_delay(policy, 1, {trailers = {["grpc-retry-pushback-ms"] = "0"}}))
  end)
  it("stops on a negative or malformed pushback", function()
    assert.is_nil(client.retry_delay(policy, 1, {trailers = {["grpc-retry-pushback-ms"] = "-1"}}))
    assert.is_nil(client.retry_delay(policy, 1, {trailers = {["grpc-retry-pushback-ms"] = "soon"}}))
  end)
  it("honours RetryInfo in the details", function()
    local err = {trailers = {}, details = {details.RetryInfo(1.5)}}
    assert.near(1.5, client.retry_delay(policy, 1, err), 1e-9)
  end)
  it("backs off with full jitter, capped", function()
    for n = 1, 6 do
      local cap = math.min(0.1 * 2 ^ (n - 1), 0.4)
      local hi = 0
      for _ = 1, 200 do
        local d = client.retry_delay(policy, n, {trailers = {}})
        assert.is_true(d >= 0 and d <= cap)
        if d > hi then hi = d end
      end
      assert.is_true(hi > cap / 2) -- spread over the range, not stuck at 0
    end
  end)
end)

describe("moonwire.client retry budget", function()
  it("stops retries at half the tokens and refills by the ratio", function()
    local b = client.new_budget(10, 0.5)
    for _ = 1, 4 do assert.is_true(client.budget_fail(b)) end -- 9, 8, 7, 6 left
    assert.is_false(client.budget_fail(b))                    -- 5: half, no more
    assert.is_false(client.budget_fail(b))
    for _ = 1, 4 do client.budget_ok(b) end                   -- 4 + 2 = 6
    assert.is_true(client.budget_fail(b) == false)            -- 5 again
    for _ = 1, 100 do client.budget_ok(b) end
    assert.equal(10, b.tokens)                                -- capped
  end)
end)

describe("moonwire.client errors", function()
  it("decodes the details of grpc-status-details-bin", function()
    local bin = status.encode(status.status(14, "busy", {details.RetryInfo(2),
      details.ErrorInfo {reason = "OVERLOAD", domain = "x"}}))
    local err = client.make_error(14, "busy", bin, {k = "v"})
    assert.is_true(status.is_status(err))
    assert.equal(14, err.code); assert.equal("busy", err.message)
    assert.equal("type.googleapis.com/google.rpc.RetryInfo", err.details[1]["@type"])
    assert.equal("OVERLOAD", err.details[2].reason)
    assert.equal("v", err.trailers.k)
  end)
  it("makes a plain status error without details", function()
    local err = client.make_error(4, "deadline exceeded", nil, nil)
    assert.equal(4, err.code); assert.same({}, err.trailers)
  end)
end)

describe("mw.client", function()
  it("refuses a target outside client.allow", function()
    local ok, err = pcall(client.new, "127.0.0.1:1")
    assert.is_false(ok); assert.truthy(err:find("not in client.allow", 1, true))
  end)
  it("refuses what is not a target", function()
    for _, t in ipairs {"dns:///x:1", "host", "a/b:1", "h:port"} do
      local ok, err = pcall(client.new, t)
      assert.is_false(ok); assert.truthy(err:find("is not a target", 1, true), t)
    end
  end)
  it("refuses unknown options", function()
    local ok, err = pcall(client.new, "127.0.0.1:1", {timout = 1})
    assert.is_false(ok); assert.truthy(err:find("unknown option 'timout'", 1, true))
    ok, err = pcall(client.new, "127.0.0.1:1", {tls = {cafile = "x"}})
    assert.is_false(ok); assert.truthy(err:find("unknown tls option 'cafile'", 1, true))
  end)
  it("has no client config outside a server", function()
    assert.same({}, client.config_problems())
  end)
end)
