-- Specs for the idempotency store over a shared dict
-- (moonwire.interceptors.idempotency's dict_store), on a memory dict: its
-- claim, complete and release as the interceptor's store contract says,
-- and the interceptor over it (first call, replay, mismatch, abort). The
-- same store on Redis, across instances, is tests/e2e/test_idempotency_redis.py.
local core = require "moonwire.core"
local mw = require "moonwire"
local idem = require "moonwire.interceptors.idempotency"

core.idem_method = function()
  return "unary", "google.rpc.ErrorInfo", "google.rpc.ErrorInfo"
end
core.shared_define("idemspec", 1024 * 1024)
core.shared_define("idemtiny", 64 * 1024)

local FP1, FP2 = string.rep("a", 32), string.rep("b", 32)

local function ctx()
  local c = {method = "/a.B/C", metadata = {}, values = {}, headers = {}, done_fns = {}}
  function c:set_header(k, v) self.headers[k] = v end
  function c:set_trailer() end
  function c:response_metadata() return {}, {} end
  function c:on_done(fn) self.done_fns[#self.done_fns + 1] = fn end
  return c
end

describe("idempotency keys in a shared dict", function()
  local d = mw.shared.idemspec
  before_each(function() d:flush_all(); d:flush_expired() end)

  it("claims once, tells running, mismatch and done apart", function()
    local s = idem.dict_store(d)
    local state, token = s.claim("/a.B/C", "k", FP1)
    assert.equal("new", state)
    assert.is_string(token)
    assert.same({"running", nil}, {s.claim("/a.B/C", "k", FP1)})
    assert.same({"mismatch"}, {s.claim("/a.B/C", "k", FP2)})
    assert.equal("new", (s.claim("/a.B/D", "k", FP1))) -- another scope
    assert.equal("stale", s.complete("/a.B/C", "k", "not-the-token", "reply", 10))
    assert.equal("stored", s.complete("/a.B/C", "k", token, "reply\0bytes", 10))
    assert.same({"done", "reply\0bytes"}, {s.claim("/a.B/C", "k", FP1)})
    assert.same({"mismatch"}, {s.claim("/a.B/C", "k", FP2)})
    assert.equal("stale", s.complete("/a.B/C", "k", token, "again", 10)) -- once only
  end)

  it("releases only its own claim", function()
    local s = idem.dict_store(d)
    local _, token = s.claim("/a.B/C", "k", FP1)
    s.release("/a.B/C", "k", "someone-else")
    assert.equal("running", (s.claim("/a.B/C", "k", FP1)))
    s.release("/a.B/C", "k", token)
    assert.equal("new", (s.claim("/a.B/C", "k", FP1)))
  end)

  it("lets a claim go with its lease, and a reply with its ttl", function()
    local s = idem.dict_store(d, {lease = "20ms"})
    local _, token = s.claim("/a.B/C", "k", FP1)
    os.execute("sleep 0.05")
    local state, t2 = s.claim("/a.B/C", "k", FP2) -- the old claim is gone
    assert.equal("new", state)
    assert.equal("stale", s.complete("/a.B/C", "k", token, "late", 10))
    assert.equal("stored", s.complete("/a.B/C", "k", t2, "r", 0.02))
    os.execute("sleep 0.05")
    assert.equal("new", (s.claim("/a.B/C", "k", FP1)))
  end)

  it("keeps the key without a reply that does not fit", function()
    local s = idem.dict_store(mw.shared.idemtiny)
    local _, token = s.claim("/a.B/C", "big", FP1)
    assert.equal("unkept", s.complete("/a.B/C", "big", token, string.rep("x", 100000), 10))
    assert.same({"done", nil}, {s.claim("/a.B/C", "big", FP1)})
  end)

  it("refuses bad options", function()
    assert.has_error(function() idem.dict_store(d, {lease = "soon"}) end,
      "store.lease must be a positive duration (like 60s), not 'soon'")
    assert.has_error(function() idem.dict_store(d, {leas = 1}) end)
    assert.has_error(function() idem.new{store = {shared = 5}} end, "store.shared must name a shared dict")
    assert.has_error(function() idem.new{store = {shared = "nope"}} end)
  end)

  it("serves the interceptor: a first call, its replay, a mismatch, an abort", function()
    local runs = 0
    local i = idem.new{store = {shared = "idemspec"}, concurrent = "abort"}
    local function handler(req)
      runs = runs + 1
      return {reason = req.reason .. "!"}
    end
    local c1 = ctx()
    c1.metadata["idempotency-key"] = "key1"
    local res = i.call({reason = "r"}, c1, handler)
    assert.equal("r!", res.reason)
    local c2 = ctx()
    c2.metadata["idempotency-key"] = "key1"
    assert.equal("r!", i.call({reason = "r"}, c2, handler).reason)
    assert.equal("true", c2.headers["idempotent-replayed"])
    assert.equal(1, runs)
    local c3 = ctx()
    c3.metadata["idempotency-key"] = "key1"
    local ok, err = pcall(i.call, {reason = "other"}, c3, handler)
    assert.is_false(ok)
    assert.equal(mw.INVALID_ARGUMENT, err.code)
    -- a running claim (made by hand): aborted
    local s = idem.dict_store(d)
    local fp = core.idem_fingerprint("google.rpc.ErrorInfo", "/a.B/C", {reason = "x"}, true)
    s.claim("/a.B/C", "key2", fp)
    local c4 = ctx()
    c4.metadata["idempotency-key"] = "key2"
    ok, err = pcall(i.call, {reason = "x"}, c4, handler)
    assert.is_false(ok)
    assert.equal(mw.ABORTED, err.code)
    assert.equal(1, runs)
  end)
end)
