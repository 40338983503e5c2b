-- Specs for moonwire.interceptors.idempotency: its policy over the
-- process-wide store (core.idem_*, the C table) and over a stand-in store.
-- The schema is stood in for: every method's request and response are
-- google.rpc.ErrorInfo (reason, domain, metadata: a map), which a plain
-- lua5.4 has.
local core = require "moonwire.core"
local idem = require "moonwire.interceptors.idempotency"

local kinds = {} -- path -> kind, default unary
core.idem_method = function(path)
  return kinds[path] or "unary", "google.rpc.ErrorInfo", "google.rpc.ErrorInfo"
end

local serial = 0
local function fresh_key()
  serial = serial + 1
  return ("spec-%d-%d"):format(os.time(), serial)
end

-- A ctx as the interceptor uses it: metadata, values, the response
-- metadata it sets and reads back, and on_done functions (run by done()).
local function ctx(t)
  t = t or {}
  local c = {method = t.method or "/a.B/C", metadata = t.metadata or {}, values = t.values or {}}
  local headers, trailers, on_done = {}, {}, {}
  c.headers, c.trailers = headers, trailers
  function c:set_header(k, v) headers[#headers + 1] = {k, v} end
  function c:set_trailer(k, v) trailers[#trailers + 1] = {k, v} end
  function c:response_metadata()
    local h, tr = {}, {}
    for i, e in ipairs(headers) do h[i] = e end
    for i, e in ipairs(trailers) do tr[i] = e end
    return h, tr
  end
  function c:on_done(fn) on_done[#on_done + 1] = fn end
  function c.done(code) for _, fn in ipairs(on_done) do fn(code) end end
  return c
end

local function header(c, k)
  for _, e in ipairs(c.headers) do if e[1] == k then return e[2] end end
end

-- Runs the interceptor i on req with key (metadata idempotency-key, nil:
-- none); handler(req, ctx) is the rest of the chain. Returns ok, result, ctx.
local function call(i, req, key, handler, t)
  t = t or {}
  local md = t.metadata or {}
  if key then md["idempotency-key"] = key end
  t.metadata = md
  local c = ctx(t)
  local ok, res = pcall(i.call, req, c, handler)
  c.done(0)
  return ok, res, c
end

local function counter()
  local n = 0
  return function(req, c)
    n = n + 1
    c:set_header("x-run", tostring(n))
    return {reason = "ran " .. n, domain = req.domain}
  end, function() return n end
end

describe("moonwire.interceptors.idempotency", function()
  it("runs the first call and replays it, headers and all, for the same key and request", function()
    local i = idem.new({}, {})
    local h, runs = counter()
    local key = fresh_key()
    local ok, res, c = call(i, {reason = "pay", domain = "d"}, key, h)
    assert.is_true(ok)
    assert.equal("ran 1", res.reason)
    assert.is_nil(header(c, "idempotent-replayed"))
    ok, res, c = call(i, {reason = "pay", domain = "d"}, key, h)
    assert.is_true(ok)
    assert.same({reason = "ran 1", domain = "d", metadata = {}}, res)
    assert.equal(1, runs())
    assert.equal("true", header(c, "idempotent-replayed"))
    assert.equal("1", header(c, "x-run")) -- the first call's header, replayed
  end)

  it("refuses the key with another request, whichever order a map came in", function()
    local i = idem.new({}, {})
    local h, runs = counter()
    local key = fresh_key()
    local md1 = {}
    for k = 1, 20 do md1["k" .. k] = tostring(k) end
    local md2 = {x = "pad"}
    for k = 20, 1, -1 do md2["k" .. k] = tostring(k) end
    md2.x = nil
    assert.is_true((call(i, {reason = "r", metadata = md1}, key, h)))
    assert.is_true((call(i, {reason = "r", metadata = md2}, key, h)))
    assert.equal(1, runs())
    local ok, err = call(i, {reason = "r", metadata = {k1 = "other"}}, key, h)
    assert.is_false(ok)
    assert.equal(3, err.code)
    assert.truthy(err.message:find "different request", 1, true)
    assert.equal(1, runs())
  end)

  it("scopes a key by method and by the caller's identity", function()
    local i = idem.new({}, {})
    local h, runs = counter()
    local key = fresh_key()
    assert.is_true((call(i, {reason = "r"}, key, h)))
    assert.is_true((call(i, {reason = "r"}, key, h, {method = "/a.B/D"})))
    assert.is_true((call(i, {reason = "r"}, key, h, {values = {identity = {subject = "alice"}}})))
    assert.is_true((call(i, {reason = "r"}, key, h, {values = {identity = {subject = "bob"}}})))
    assert.equal(4, runs())
    assert.is_true((call(i, {reason = "r"}, key, h, {values = {identity = {subject = "alice"}}})))
    assert.equal(4, runs())
  end)

  it("keeps errors but those a retry should run again", function()
    local i = idem.new({}, {})
    for _, code in ipairs {3, 1, 4, 14, 8} do
      local n = 0
      local key = fresh_key()
      local function h() n = n + 1; error(core.status(code, "transient")) end
      for _ = 1, 2 do
        local ok, err = call(i, {}, key, h)
        assert.is_false(ok)
        assert.equal(code, err.code)
      end
      assert.equal(2, n) -- not kept: ran again
    end
    -- Lua's memory error is not kept either, and comes out as it was.
    local n, key = 0, fresh_key()
    for _ = 1, 2 do
      local ok, err = call(i, {}, key, function() n = n + 1; error("not enough memory", 0) end)
      assert.is_false(ok)
      assert.equal("not enough memory", err)
    end
    assert.equal(2, n)
  end)

  it("replays a kept error with its message and details", function()
    local i = idem.new({}, {})
    local mw = require "moonwire"
    local n, key = 0, fresh_key()
    local function h()
      n = n + 1
      mw.fail(mw.FAILED_PRECONDITION, "card declined",
              {mw.details.ErrorInfo{reason = "DECLINED", domain = "bank"}})
    end
    local ok1, e1 = call(i, {}, key, h)
    local ok2, e2, c2 = call(i, {}, key, h)
    assert.is_false(ok1); assert.is_false(ok2)
    assert.equal(1, n)
    assert.equal(9, e2.code)
    assert.equal("card declined", e2.message)
    assert.equal("DECLINED", e2.details[1].reason)
    assert.equal(e1.message, e2.message)
    assert.equal("true", header(c2, "idempotent-replayed"))
  end)

  it("keeps a Lua error as INTERNAL and raises the first one as it was", function()
    local i = idem.new({}, {})
    local n, key = 0, fresh_key()
    local function h() n = n + 1; error("handler bug") end
    local ok1, e1 = call(i, {}, key, h)
    assert.is_false(ok1)
    assert.truthy(tostring(e1):find "handler bug")
    local ok2, e2 = call(i, {}, key, h)
    assert.is_false(ok2)
    assert.equal(13, e2.code)
    assert.equal("internal error in the handler", e2.message)
    assert.equal(1, n)
  end)

  it("keeps a response that cannot be encoded as the INTERNAL the runtime answers", function()
    local i = idem.new({}, {})
    local key = fresh_key()
    local ok, res = call(i, {}, key, function() return {nope = 1} end)
    assert.is_true(ok)
    assert.equal(1, res.nope) -- handed on: the runtime fails the call
    local ok2, e2 = call(i, {}, key, function() error("must not run") end)
    assert.is_false(ok2)
    assert.equal(13, e2.code)
    assert.truthy(e2.message:find("invalid response: ", 1, true))
    assert.truthy(e2.message:find("nope", 1, true))
  end)

  it("lets a call without a key through unless one is required; bounds the key", function()
    local h, runs = counter()
    local i = idem.new({}, {})
    assert.is_true((call(i, {}, nil, h)))
    assert.is_true((call(i, {}, nil, h)))
    assert.is_true((call(i, {}, "", h)))
    assert.equal(3, runs())
    local r = idem.new({required = true}, {})
    local ok, err = call(r, {}, nil, h)
    assert.is_false(ok)
    assert.equal(3, err.code)
    assert.truthy(err.message:find("'idempotency-key' metadata", 1, true))
    assert.equal(3, runs())
    ok, err = call(i, {}, ("k"):rep(256), h)
    assert.is_false(ok)
    assert.equal(3, err.code)
    assert.truthy(err.message:find "255")
    assert.is_true((call(i, {}, fresh_key() .. ("k"):rep(200), h)))
  end)

  it("takes the key from other metadata or from a request field", function()
    local h, runs = counter()
    local m = idem.new({key = {metadata = "X-Request-Id"}}, {})
    local key = fresh_key()
    assert.is_true((call(m, {}, nil, h, {metadata = {["x-request-id"] = key}})))
    assert.is_true((call(m, {}, nil, h, {metadata = {["x-request-id"] = key}})))
    assert.equal(1, runs())
    local f = idem.new({key = {field = "domain"}, required = true}, {level = "method", method = "/a.B/C"})
    key = fresh_key()
    assert.is_true((call(f, {domain = key}, nil, h)))
    assert.is_true((call(f, {domain = key}, nil, h)))
    assert.equal(2, runs())
    local ok, err = call(f, {domain = ""}, nil, h)
    assert.is_false(ok)
    assert.truthy(err.message:find("request field 'domain'", 1, true))
  end)

  it("aborts a duplicate of a running call with concurrent = abort", function()
    local i = idem.new({concurrent = "abort"}, {})
    local key = fresh_key()
    local inner_ok, inner_err
    local ok = call(i, {reason = "r"}, key, function(req)
      -- The same key arrives while this call runs.
      inner_ok, inner_err = call(i, {reason = "r"}, key, function() error("must not run") end)
      return {reason = "first"}
    end)
    assert.is_true(ok)
    assert.is_false(inner_ok)
    assert.equal(10, inner_err.code)
    -- And once it has ended, the duplicate gets the reply.
    local ok2, res2 = call(i, {reason = "r"}, key, function() error("must not run") end)
    assert.is_true(ok2)
    assert.equal("first", res2.reason)
  end)

  it("lets the key go when the call ends without finishing (a stopped handler)", function()
    local i = idem.new({concurrent = "abort"}, {})
    local key = fresh_key()
    local c = ctx {metadata = {["idempotency-key"] = key}}
    -- The handler never comes back (as when its budget stops it): the
    -- claim stays until the call's on_done.
    local co = coroutine.create(function()
      return i.call({}, c, function() coroutine.yield() end)
    end)
    assert.is_true((coroutine.resume(co)))
    local ok, err = call(i, {}, key, function() return {} end)
    assert.is_false(ok)
    assert.equal(10, err.code) -- still running
    c.done(4)
    local ran = false
    assert.is_true((call(i, {}, key, function() ran = true; return {} end)))
    assert.is_true(ran)
  end)

  it("waits for a running duplicate through its store", function()
    local reply = idem.pack_reply(0, "", "", core.idem_encode("google.rpc.ErrorInfo", {reason = "kept"}),
                                  {{"x-a", "1"}}, 0, {{"x-t", "2"}}, 0)
    local log = {}
    local claims = 0
    local store = {
      claim = function(scope, key, fp)
        claims = claims + 1
        log[#log + 1] = ("claim %s %s %d"):format(scope, key, #fp)
        if claims == 1 then return "running", 7 end
        return "done", reply
      end,
      complete = function() error("not here") end,
      release = function() error("not here") end,
      wait = function(v) log[#log + 1] = "wait " .. v end,
    }
    local i = idem.new({store = store}, {})
    local ok, res, c = call(i, {}, "k", function() error("must not run") end)
    assert.is_true(ok)
    assert.equal("kept", res.reason)
    assert.same({"claim /a.B/C k 32", "wait 7", "claim /a.B/C k 32"}, log)
    assert.same({{"x-a", "1"}, {"idempotent-replayed", "true"}}, c.headers)
    assert.same({{"x-t", "2"}}, c.trailers)
  end)

  it("tells a duplicate of a call whose reply was not kept, and a full store", function()
    local store = {
      claim = function(_, key) if key == "full" then return "full" end return "done", nil end,
      complete = function() end, release = function() end, wait = function() end,
    }
    local i = idem.new({store = store}, {})
    local ok, err = call(i, {}, "unkept", function() error("must not run") end)
    assert.is_false(ok)
    assert.equal(6, err.code) -- ALREADY_EXISTS
    ok, err = call(i, {}, "full", function() error("must not run") end)
    assert.is_false(ok)
    assert.equal(8, err.code)
  end)

  it("leaves streaming methods be when it covers a service", function()
    kinds["/a.B/S"] = "server_stream"
    local i = idem.new({required = true}, {level = "service", service = "a.B"})
    local n = 0
    for _ = 1, 2 do
      assert.is_true((call(i, nil, "k", function() n = n + 1 end, {method = "/a.B/S"})))
    end
    assert.equal(2, n)
  end)

  it("refuses bad options and streaming methods", function()
    local function refused(opts, env, want)
      local ok, err = pcall(idem.new, opts, env or {})
      assert.is_false(ok)
      assert.truthy(tostring(err):find(want, 1, true), tostring(err))
    end
    refused({ttl = "soon"}, nil, "ttl must be a positive duration")
    refused({ttl = 0}, nil, "ttl must be a positive duration")
    refused({concurrent = "queue"}, nil, "concurrent must be wait or abort")
    refused({required = "yes"}, nil, "required must be true or false")
    refused({tll = "1s"}, nil, "unknown option 'tll'")
    refused({key = "header"}, nil, "key must be metadata")
    refused({key = {metadata = "x", field = "y"}}, nil, "not both")
    refused({key = {metadata = "bad key"}}, nil, "bad metadata name")
    refused({key = {header = "x"}}, nil, "unknown option 'header'")
    refused({key = {field = "nope"}}, {level = "method", method = "/a.B/C"},
            "google.rpc.ErrorInfo has no field 'nope'")
    refused({key = {field = "metadata"}}, {level = "method", method = "/a.B/C"},
            "a key field is a string or an integer")
    refused({store = {claim = print}}, nil, "store: complete must be a function")
    kinds["/a.B/Up"] = "client_stream"
    refused({}, {level = "method", method = "/a.B/Up"},
            "idempotency applies to unary methods only; /a.B/Up is client-stream")
  end)

  it("fingerprints requests by method and content, maps in any order", function()
    assert.is_true(core.idem_maps("google.rpc.ErrorInfo"))
    assert.is_false(core.idem_maps("google.rpc.BadRequest"))
    assert.is_false(core.idem_maps("google.rpc.Status")) -- its details are Any
    local a = {}
    for k = 1, 30 do a["k" .. k] = "v" end
    local b = {}
    for k = 30, 1, -1 do b["k" .. k] = "v" end
    local fa = core.idem_fingerprint("google.rpc.ErrorInfo", "/a.B/C", {reason = "r", metadata = a}, true)
    local fb = core.idem_fingerprint("google.rpc.ErrorInfo", "/a.B/C", {reason = "r", metadata = b}, true)
    assert.equal(32, #fa)
    assert.equal(fa, fb)
    assert.not_equal(fa, core.idem_fingerprint("google.rpc.ErrorInfo", "/a.B/D", {reason = "r", metadata = a}, true))
    assert.not_equal(fa, core.idem_fingerprint("google.rpc.ErrorInfo", "/a.B/C", {reason = "s", metadata = a}, true))
    local f, err = core.idem_fingerprint("google.rpc.ErrorInfo", "/a.B/C", {nope = 1}, true)
    assert.is_nil(f)
    assert.truthy(err:find("nope", 1, true))
    assert.has_error(function() core.idem_fingerprint("no.Such", "/a.B/C", {}, false) end)
  end)

  it("sits innermost in a method's chain from the config, a method's replacing its service's", function()
    local intercept = require "moonwire.intercept"
    local A, B, C, I, J = {n = "A"}, {n = "B"}, {n = "C"}, {n = "I"}, {n = "J"}
    local cfg = {global = {{i = A}}, services = {["a.B"] = {{i = B}}},
                 methods = {["/a.B/C"] = {{i = C}}}, innermost = {["a.B"] = {{i = I}}}}
    assert.same({A, B, C, I}, intercept.chain("a.B", "/a.B/C", cfg))
    cfg.innermost["/a.B/C"] = {{i = J}}
    assert.same({A, B, C, J}, intercept.chain("a.B", "/a.B/C", cfg))
    assert.same({A, B, I}, intercept.chain("a.B", "/a.B/D", cfg))
    assert.same({A}, intercept.chain("x.Y", "/x.Y/Z", cfg))
  end)

  it("packs and unpacks replies", function()
    local blob = idem.pack_reply(9, "m", "d", "b", {{"a", "1"}, {"b", "2"}}, 1, {}, 0)
    local code, message, details, body, headers, trailers = idem.unpack_reply(blob)
    assert.same({9, "m", "d", "b", {{"b", "2"}}, {}}, {code, message, details, body, headers, trailers})
  end)
end)
