-- Specs for lua/moonwire/intercept.lua and its use by moonwire.service: the
-- order interceptors compose in, per-message hooks on every kind, failing
-- and replacing. Streams and ctx are plain Lua stand-ins here; the real
-- ones are exercised end to end (tests/e2e/test_interceptors.py).
local intercept = require "moonwire.intercept"
local service = require "moonwire.service"

local function ctx() return {values = {}} end

-- A stream stand-in: recv pops from `input`, send appends to `sent`.
local function fake_stream(input)
  local s = {sent = {}, input = input or {}, extra_calls = 0}
  function s:recv() return table.remove(self.input, 1) end
  function s:send(msg) self.sent[#self.sent + 1] = msg end
  function s:iter() return function() return self:recv() end end
  function s:extra(x) self.extra_calls = self.extra_calls + 1; return x end
  return s
end

-- An interceptor that logs what it sees into `log`, tagged.
local function tagger(log, t)
  return {
    call = function(req, c, next)
      log[#log + 1] = "call>" .. t
      local res = next(req, c)
      log[#log + 1] = "call<" .. t
      return res
    end,
    recv = function(msg, c) log[#log + 1] = "recv " .. t; msg.path = (msg.path or "") .. t end,
    send = function(msg, c) log[#log + 1] = "send " .. t; msg.path = (msg.path or "") .. t end,
  }
end

describe("moonwire.intercept", function()
  it("binds the handler itself when no interceptor applies", function()
    local h = function() end
    assert.are.equal(h, intercept.compose(h, "unary", {}))
    assert.are.equal(h, intercept.compose(h, "bidi_stream", {}))
  end)

  it("normalizes functions and refuses what is not an interceptor", function()
    local f = function() end
    assert.are.same({call = f}, intercept.normalize(f))
    assert.is_nil((intercept.normalize {}))
    assert.is_nil((intercept.normalize {call = 3}))
    assert.is_nil((intercept.normalize "x"))
    assert.has_error(function() intercept.register {} end)
    assert.has_error(function() intercept.register("/bad/path/x", f) end)
  end)

  it("runs a unary call as an onion: recv, call, next, send per layer", function()
    local log = {}
    local handler = function(req, c)
      log[#log + 1] = "handler " .. req.path
      return {path = ""}
    end
    local fn = intercept.compose(handler, "unary", {tagger(log, "a"), tagger(log, "b")})
    local res = fn({}, ctx())
    assert.are.same({"recv a", "call>a", "recv b", "call>b", "handler ab",
                     "call<b", "send b", "call<a", "send a"}, log)
    assert.are.equal("ba", res.path)
  end)

  it("runs per-message hooks on every kind of call", function()
    -- server streaming: the request through recv, each message through send
    local log = {}
    local s = fake_stream()
    local fn = intercept.compose(function(req, stream, c)
      assert.are.equal("ab", req.path)
      stream:send {path = ""}
      stream:send {path = ""}
    end, "server_stream", {tagger(log, "a"), tagger(log, "b")})
    fn({}, s, ctx())
    assert.are.same({{path = "ba"}, {path = "ba"}}, s.sent)

    -- client streaming: each message through recv, the response through send
    s = fake_stream {{}, {}}
    fn = intercept.compose(function(stream, c)
      local seen = {}
      for m in stream:iter() do seen[#seen + 1] = m.path end
      return {path = table.concat(seen, ",") .. "|"}
    end, "client_stream", {tagger({}, "a"), tagger({}, "b")})
    assert.are.equal("ab,ab|ba", fn(s, ctx()).path)

    -- bidi: both directions per message; other stream methods forwarded
    s = fake_stream {{}, {}}
    fn = intercept.compose(function(stream, c)
      assert.are.equal(7, stream:extra(7))
      for m in stream:iter() do stream:send {path = m.path .. "|"} end
    end, "bidi_stream", {tagger({}, "a"), tagger({}, "b")})
    fn(s, ctx())
    assert.are.same({{path = "ab|ba"}, {path = "ab|ba"}}, s.sent)
    assert.are.equal(1, s.extra_calls)
  end)

  it("passes the real stream when no per-message hook applies", function()
    local s = fake_stream()
    local got
    local fn = intercept.compose(function(stream, c) got = stream end, "bidi_stream",
                                 {function(req, c, next) return next(req, c) end})
    fn(s, ctx())
    assert.are.equal(s, got)
  end)

  it("lets an interceptor fail the call, short of the handler", function()
    local ran = false
    local fn = intercept.compose(function() ran = true; return {} end, "unary", {
      function(req, c, next) error({code = 7, message = "no"}) end,
    })
    local ok, e = pcall(fn, {}, ctx())
    assert.is_false(ok)
    assert.are.same({code = 7, message = "no"}, e)
    assert.is_false(ran)
  end)

  it("propagates errors out of next() as the same value", function()
    local raised = {code = 5, message = "missing"}
    local seen
    local fn = intercept.compose(function() error(raised) end, "unary", {
      function(req, c, next)
        local ok, e = pcall(next, req, c)
        seen = e
        error(e, 0)
      end,
    })
    local ok, e = pcall(fn, {}, ctx())
    assert.is_false(ok)
    assert.are.equal(raised, seen)
    assert.are.equal(raised, e)
  end)

  it("lets interceptors replace the request and the response", function()
    local fn = intercept.compose(function(req) return {v = req.v .. "!"} end, "unary", {
      {recv = function() return {v = "new"} end,
       send = function(res) return {v = "wrapped " .. res.v} end},
      function(req, c, next) return next({v = req.v .. "+"}, c) end,
    })
    assert.are.same({v = "wrapped new+!"}, fn({v = "old"}, ctx()))
  end)
end)

describe("moonwire.service with interceptors", function()
  local schema = {
    ["spec.I"] = {{"A", "B"}, {A = 10, B = 11}, {A = "unary", B = "bidi_stream"}},
    ["spec.J"] = {{"C"}, {C = 12}, {C = "unary"}},
  }
  local function methods(name)
    local s = schema[name]
    if not s then return {}, {}, {} end
    return table.unpack(s)
  end

  -- A config interceptor module, found like a built-in.
  package.preload["moonwire.interceptors.spec_tag"] = function()
    return {new = function(opts, env)
      if opts.bad then error("bad option", 0) end
      return {name = "spec_tag", call = function(req, c, next)
        c.values.order = (c.values.order or "") .. opts.t .. "(" .. env.level .. ")"
        return next(req, c)
      end}
    end}
  end
  local function entry(t, where) return {name = "spec_tag", opts = {t = t}, where = where or "y:1:1"} end

  it("orders global, service, method; config before Lua at each level", function()
    local I = service.declare "spec.I"
    I.A = function(req, c) return {order = c.values.order} end
    local J = service.declare "spec.J"
    J.C = I.A
    local function lua(t)
      return function(req, c, next)
        c.values.order = (c.values.order or "") .. t .. " "
        return next(req, c)
      end
    end
    intercept.register("/spec.I/A", lua "lm")
    intercept.register("spec.I", lua "ls")
    intercept.register(lua "lg")
    local bound = {}
    local problems = service.bind(function(i, fn) bound[i] = fn end, methods, {
      global = {entry "g"},
      services = {["spec.I"] = {entry "s"}},
      methods = {["/spec.I/A"] = {entry "m"}},
    }, false)
    assert.are.same({}, problems)
    assert.are.equal("g(global)lg s(service)ls m(method)lm ", bound[10]({}, ctx()).order)
    assert.are.equal("g(global)lg ", bound[12]({}, ctx()).order)
  end)

  it("reports unknown names and refused options with where they were written", function()
    local problems = service.bind(function() end, methods, {
      global = {{name = "no_such", opts = {}, where = "cfg.yaml:3:5"}},
      methods = {["/spec.I/A"] = {{name = "spec_tag", opts = {bad = true}, where = "cfg.yaml:9:7"}}},
    }, false)
    table.sort(problems)
    assert.are.same({"cfg.yaml:3:5: unknown interceptor 'no_such'",
                     "cfg.yaml:9:7: interceptor 'spec_tag': bad option"}, problems)
    intercept.register("spec.Nope", function(r, c, n) return n(r, c) end)
    problems = service.bind(function() end, methods, {})
    assert.are.equal(1, #problems)
    assert.matches("intercept_spec%.lua:%d+: mw%.intercept: no service 'spec%.Nope'", problems[1])
    -- once bound, registering applies to nothing: it raises
    assert.has_error(function() intercept.register(function() end) end,
                     "mw.intercept must be called while the scripts load, not from a handler")
  end)
end)

describe("mw.duration, mw.now and mw.interceptors", function()
  local mw = require "moonwire"
  it("parses durations to seconds", function()
    assert.are.equal(0.5, mw.duration "500ms")
    assert.are.equal(2, mw.duration "2s")
    assert.are.equal(90, mw.duration "1.5m")
    assert.are.equal(3600, mw.duration "1h")
    assert.are.equal(3, mw.duration(3))
    assert.has_error(function() mw.duration "soon" end)
    assert.has_error(function() mw.duration "5 parsecs" end)
    assert.has_error(function() mw.duration(-1) end)
  end)

  it("tells the wall clock", function()
    assert.is_true(math.abs(mw.now() - os.time()) < 2)
    assert.are.equal(math.type(mw.now()), "float")
  end)

  it("makes built-ins and checks their options", function()
    local d = mw.interceptors.deadline {default = "2s", max = 10}
    assert.are.equal("function", type(d.call))
    assert.has_error(function() mw.interceptors.deadline {default = "5s", max = "1s"} end)
    assert.has_error(function() mw.interceptors.deadline {typo = 1} end)
    assert.are.equal("function", type(mw.interceptors.access_log {calls = "errors"}.call))
    assert.has_error(function() mw.interceptors.access_log {level = "loud"} end)
    assert.is_nil(mw.interceptors.no_such_interceptor)
  end)

  it("the deadline built-in only ever shortens", function()
    local d = mw.interceptors.deadline {default = 2, max = 5}
    local set = {}
    local function call(deadline)
      local c = {deadline = deadline, set_deadline = function(_, s) set[#set + 1] = s end}
      return d.call({}, c, function() return {ok = true} end)
    end
    assert.are.same({ok = true}, call(nil))
    call(mw.now() + 60)
    assert.are.same({2, 5}, set)
  end)
end)
