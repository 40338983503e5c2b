-- Specs for lua/moonwire/interceptors/trace.lua: its call/recv/send run on a
-- stand-in ctx; the span it would export is read back as the JSON the C
-- encoder makes (core.trace_export returns it). The real exporter and a
-- collector are exercised end to end (tests/e2e/test_tracing.py).
local trace = require "moonwire.interceptors.trace"
local core = require "moonwire.core"

local function json_has(s, frag) return s:find(frag, 1, true) ~= nil end

-- A ctx stand-in: metadata from md, on_done callbacks kept to run by hand.
local function ctx(md, kind)
  local c = {service = "pkg.Svc", method_name = "M", kind = kind or "unary",
             peer = "ipv4:127.0.0.1:5555", values = {}, done = {}}
  function c:metadata_values(k)
    local out = {}
    for _, kv in ipairs(md or {}) do if kv[1] == k then out[#out + 1] = kv[2] end end
    return out
  end
  function c:on_done(f) self.done[#self.done + 1] = f end
  return c
end

local TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

describe("trace interceptor", function()
  it("takes the parent from traceparent and makes the child's header", function()
    local i = trace.new({}, {level = "global"})
    local c = ctx {{"traceparent", TP}, {"tracestate", "a=1"}}
    local res = i.call({}, c, function(req, cx) return {ok = true} end)
    assert.same({ok = true}, res)
    local t = c.trace
    assert.equal("4bf92f3577b34da6a3ce929d0e0e4736", t.trace_id)
    assert.equal("00f067aa0ba902b7", t.parent_span_id)
    assert.matches("^%x+$", t.span_id)
    assert.equal(16, #t.span_id)
    assert.is_true(t.sampled)
    assert.equal("00-" .. t.trace_id .. "-" .. t.span_id .. "-01", t.traceparent)
    assert.equal("a=1", t.tracestate)
  end)

  it("starts a new trace on an invalid or repeated traceparent", function()
    local i = trace.new({}, {})
    for _, md in ipairs {
      {{"traceparent", TP:upper()}},
      {{"traceparent", "ff" .. TP:sub(3)}},
      {{"traceparent", TP}, {"traceparent", TP}},
    } do
      local c = ctx(md)
      i.call({}, c, function() return {} end)
      assert.is_nil(c.trace.parent_span_id)
      assert.are_not.equal("4bf92f3577b34da6a3ce929d0e0e4736", c.trace.trace_id)
      assert.equal(32, #c.trace.trace_id)
      assert.is_nil(c.trace.tracestate) -- only kept with a parent
    end
  end)

  it("follows the parent's sampled flag and the ratio for new traces", function()
    local never = trace.new({sample = 0.0}, {})
    local c = ctx {{"traceparent", TP}}
    never.call({}, c, function() return {} end)
    assert.is_true(c.trace.sampled)
    c = ctx {{"traceparent", TP:sub(1, -3) .. "00"}}
    trace.new({}, {}).call({}, c, function() return {} end)
    assert.is_false(c.trace.sampled)
    assert.equal(0, #c.done) -- unsampled: nothing recorded, no on_done
    c = ctx()
    never.call({}, c, function() return {} end)
    assert.is_false(c.trace.sampled)
    assert.matches("%-00$", c.trace.traceparent)
    c.trace:set("k", "v") -- a no-op, not an error
    c.trace:event("e")
  end)

  it("refuses bad options", function()
    assert.has_error(function() trace.new({sample = 2}, {}) end)
    assert.has_error(function() trace.new({rate = 1}, {}) end)
  end)

  it("exports a span with the v1.37 attributes and the status mapping", function()
    local i = trace.new({}, {})
    local c = ctx {{"traceparent", TP}}
    local ok = pcall(i.call, {}, c, function() core.fail(13, "broke") end)
    assert.is_false(ok)
    c.trace:set("app.x", 3)
    local json = trace.finish(c.trace, 13, "broke")
    assert.is_true(json_has(json, '"name":"pkg.Svc/M","kind":2'))
    assert.is_true(json_has(json, '"parentSpanId":"00f067aa0ba902b7"'))
    assert.is_true(json_has(json, '{"key":"rpc.system","value":{"stringValue":"grpc"}}'))
    assert.is_true(json_has(json, '{"key":"rpc.grpc.status_code","value":{"intValue":"13"}}'))
    assert.is_true(json_has(json, '{"key":"network.peer.port","value":{"intValue":"5555"}}'))
    assert.is_true(json_has(json, '{"key":"app.x","value":{"intValue":"3"}}'))
    assert.is_true(json_has(json, '"status":{"code":2,"message":"broke"}'))
    assert.is_nil(trace.finish(c.trace, 13, "again")) -- once only
    -- a client's mistake is no server error
    c = ctx()
    i.call({}, c, function() return {} end)
    json = trace.finish(c.trace, 5, "not found")
    assert.is_true(json_has(json, '"status":{"code":0}'))
  end)

  it("records the message events of streams, counted per direction", function()
    local i = trace.new({}, {})
    local c = ctx({}, "bidi_stream")
    i.call(nil, c, function(_, cx)
      i.recv({}, cx); i.send({}, cx); i.recv({}, cx); i.recv({}, cx); i.send({}, cx)
    end)
    local json = trace.finish(c.trace, 0)
    local seen = {}
    for typ, id in json:gmatch('"rpc%.message%.type","value":{"stringValue":"(%u+)"}},' ..
                               '{"key":"rpc%.message%.id","value":{"intValue":"(%d+)"}}') do
      seen[#seen + 1] = typ .. id
    end
    if #seen == 0 then -- attribute order is the table's: try the other one
      for id, typ in json:gmatch('"rpc%.message%.id","value":{"intValue":"(%d+)"}},' ..
                                 '{"key":"rpc%.message%.type","value":{"stringValue":"(%u+)"}}') do
        seen[#seen + 1] = typ .. id
      end
    end
    assert.same({"RECEIVED1", "SENT1", "RECEIVED2", "RECEIVED3", "SENT2"}, seen)
    -- unary messages are no events
    c = ctx()
    i.recv({}, c)
    i.call({}, c, function() return {} end)
    i.send({}, c)
    assert.is_false(json_has(trace.finish(c.trace, 0), "rpc.message"))
  end)

  it("keeps the error raised inside next()", function()
    local i = trace.new({}, {})
    local c = ctx()
    local boom = setmetatable({}, {})
    local ok, e = pcall(i.call, {}, c, function() error(boom) end)
    assert.is_false(ok)
    assert.equal(boom, e)
    -- ctx:on_done was asked for, and exports the span when run
    assert.equal(1, #c.done)
    c.done[1](2)
    assert.is_nil(trace.finish(c.trace, 2)) -- already finished by on_done
  end)

  it("checks set and event arguments", function()
    local c = ctx()
    trace.new({}, {}).call({}, c, function() return {} end)
    assert.has_error(function() c.trace:set(1, "x") end)
    assert.has_error(function() c.trace:set("k", {}) end)
    assert.has_error(function() c.trace:event(nil) end)
  end)
end)
