-- Specs for mw.shared (lua/l_shared.c over shared/mw_shdict.c), run with
-- busted under lua5.4: the return values of every method as OpenResty's
-- ngx.shared.DICT gives them, and the checks that raise.
local core = require "moonwire.core"
local mw = require "moonwire"

core.shared_define("spec", 1024 * 1024)
core.shared_define("tiny", 64 * 1024)

local function sleep(s)
  local t = os.clock() + s -- CPU time: enough for a few milliseconds of ttl
  while os.clock() < t do end
end

describe("mw.shared", function()
  local d = mw.shared.spec
  before_each(function()
    d:flush_all(); d:flush_expired()
  end)

  it("finds configured dicts and names them when the name is unknown", function()
    assert.equal(d, mw.shared.spec)
    assert.equal("moonwire.shared: spec", tostring(d))
    local ok, err = pcall(function() return mw.shared.nope end)
    assert.is_false(ok)
    assert.truthy(err:find("unknown shared dict 'nope' (configured: spec, tiny)", 1, true), err)
    assert.is_false((pcall(function() return mw.shared[1] end)))
    assert.equal(1024 * 1024, d:capacity())
    assert.is_true(d:free_space() > 1000000)
  end)

  it("gets and sets every value type, keeping integers and floats apart", function()
    assert.is_nil(d:get("missing"))
    assert.equal(1, select("#", d:get("missing")))
    local ok, err, forcible = d:set("s", "a\0b")
    assert.is_true(ok); assert.is_nil(err); assert.is_false(forcible)
    assert.equal("a\0b", d:get("s"))
    assert.equal(1, select("#", d:get("s"))) -- no flags: one value
    d:set("i", 42)
    assert.equal(math.type(d:get("i")), "integer")
    d:set("f", 42.0)
    assert.equal(math.type(d:get("f")), "float")
    d:set("t", true); d:set("b", false)
    assert.is_true(d:get("t")); assert.is_false(d:get("b"))
    d:set(7, "seven") -- a number key is its string
    assert.equal("seven", d:get("7"))
    d:set("e", "")
    assert.equal("", d:get("e"))
    local big = string.rep("x", 100000)
    d:set("big", big)
    assert.equal(big, d:get("big"))
  end)

  it("returns OpenResty's errors for keys and values", function()
    assert.same({nil, "nil key"}, {d:get(nil)})
    assert.same({nil, "empty key"}, {d:set("", 1)})
    assert.same({nil, "key too long"}, {d:get(string.rep("k", 65536))})
    assert.same({nil, "bad value type"}, {d:set("k", {})})
    assert.is_false((pcall(d.get, d, {})))    -- a table key is misuse
    assert.is_false((pcall(d.get, "k")))      -- d.get instead of d:get
    assert.is_false((pcall(d.set, d, "k", 1, -1)))  -- negative exptime
    assert.is_false((pcall(d.set, d, "k", 1, 0, -1))) -- bad flags
    assert.is_false((pcall(d.set, d, "k", 1, 0, 2 ^ 32)))
  end)

  it("stores flags and reports them", function()
    d:set("k", "v", 0, 7)
    assert.same({"v", 7}, {d:get("k")})
    assert.same({"v", 7, false}, {d:get_stale("k")})
    d:set("k", "v")
    assert.same({"v", nil, false}, {d:get_stale("k")})
    assert.equal(3, select("#", d:get_stale("k")))
  end)

  it("expires values, and get_stale still reads them", function()
    d:set("k", "v", 0.005, 3)
    local ttl = d:ttl("k")
    assert.is_true(ttl > 0 and ttl <= 0.005)
    sleep(0.02)
    assert.is_nil(d:get("k"))
    assert.same({"v", 3, true}, {d:get_stale("k")})
    assert.same({nil, "not found"}, {d:ttl("k")})
    d:set("n", 1)
    assert.equal(0, d:ttl("n"))
    assert.is_true(d:expire("n", 10))
    assert.is_true(d:ttl("n") > 9.9)
    assert.is_true(d:expire("n", 0))
    assert.equal(0, d:ttl("n"))
    assert.same({nil, "not found"}, {d:expire("missing", 1)})
    assert.is_false((pcall(d.expire, d, "n")))
  end)

  it("adds, replaces and deletes", function()
    assert.same({false, "not found", false}, {d:replace("k", 1)})
    assert.same({true, nil, false}, {d:add("k", 1)})
    assert.same({false, "exists", false}, {d:add("k", 2)})
    assert.same({false, "exists", false}, {d:safe_add("k", 2)})
    assert.same({true, nil, false}, {d:replace("k", 3)})
    assert.equal(3, d:get("k"))
    assert.same({true, nil, false}, {d:safe_set("k", 4)})
    assert.is_true((d:delete("k")))
    assert.is_nil(d:get("k"))
    d:set("k", 1); d:set("k", nil)
    assert.is_nil(d:get("k"))
  end)

  it("increments with OpenResty's results", function()
    assert.same({nil, "not found"}, {d:incr("c", 1)})
    assert.same({11, nil, false}, {d:incr("c", 1, 10)})
    assert.same({12}, {d:incr("c", 1)})
    assert.equal("integer", math.type(d:incr("c", 1)))
    assert.equal(13.5, d:incr("c", 0.5))
    assert.equal(-1.5, d:incr("c", -15))
    assert.equal(5, d:incr("s", "5", 0)) -- numeric strings are numbers
    d:set("str", "x")
    assert.same({nil, "not a number"}, {d:incr("str", 1)})
    assert.is_false((pcall(d.incr, d, "c", "x")))
    assert.is_false((pcall(d.incr, d, "c")))
    assert.is_false((pcall(d.incr, d, "n", 1, nil, 5))) -- init_ttl without init
    d:incr("t", 1, 0, 0.005)
    assert.is_true(d:ttl("t") > 0)
    sleep(0.02)
    assert.equal(1, d:incr("t", 1, 0)) -- expired: init starts it again
    assert.equal(0, d:ttl("t"))
  end)

  it("keeps lists", function()
    assert.equal(0, d:llen("l"))
    assert.is_nil(d:lpop("l"))
    assert.equal(1, d:rpush("l", "b"))
    assert.equal(2, d:lpush("l", "a"))
    assert.equal(3, d:rpush("l", 3))
    assert.equal(4, d:rpush("l", 4.5))
    assert.same({nil, "bad value type"}, {d:rpush("l", true)})
    assert.equal(4, d:llen("l"))
    assert.same({nil, "value is a list"}, {d:get("l")})
    assert.same({nil, "not a number"}, {d:incr("l", 1)})
    assert.equal("a", d:lpop("l"))
    assert.equal(4.5, d:rpop("l"))
    assert.equal("integer", math.type(d:rpop("l")))
    assert.equal("b", d:rpop("l"))
    assert.is_nil(d:rpop("l"))
    d:set("v", 1)
    assert.same({nil, "value not a list"}, {d:lpush("v", 1)})
    assert.same({nil, "value not a list"}, {d:lpop("v")})
    assert.same({nil, "value not a list"}, {d:llen("v")})
  end)

  it("lists keys, flushes all and flushes expired", function()
    for i = 1, 5 do d:set("k" .. i, i) end
    local keys = d:get_keys()
    assert.equal(5, #keys)
    assert.equal("k5", keys[1]) -- most recent first
    assert.equal(2, #d:get_keys(2))
    assert.equal(5, #d:get_keys(0))
    d:flush_all()
    assert.is_nil(d:get("k1"))
    assert.equal(1, d:get_stale("k1"))
    assert.equal(0, #d:get_keys())
    assert.equal(2, d:flush_expired(2))
    assert.equal(3, d:flush_expired())
    assert.is_nil(d:get_stale("k1"))
  end)

  it("evicts for set and refuses for safe_set and pushes when full", function()
    local t = mw.shared.tiny
    local v = string.rep("v", 1000)
    local i = 0
    while true do
      i = i + 1
      local ok, err = t:safe_set("k" .. i, v)
      if not ok then
        assert.is_nil(ok); assert.equal("no memory", err)
        break
      end
    end
    assert.same({nil, "no memory"}, {t:safe_add("new", v)})
    assert.same({nil, "no memory"}, {t:rpush("list", v)})
    assert.equal(v, t:get("k1"))
    local ok, err, forcible = t:set("new", v)
    assert.is_true(ok); assert.is_nil(err); assert.is_true(forcible)
    assert.is_nil(t:get("k2")) -- the least recently used went; k1 was read
    assert.equal(v, t:get("k1"))
    local _, _, f2 = t:incr("ctr", 1, 0)
    assert.is_boolean(f2)
    ok, err, forcible = t:set("huge", string.rep("h", 70000))
    assert.same({false, "no memory"}, {ok, err})
  end)
end)
