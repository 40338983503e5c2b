-- Specs for mw.shared on Redis (lua/l_shared.c over shared/mw_redis.c),
-- against a real redis-server this spec starts on a free loopback port:
-- the cases of shared_spec.lua that hold for Redis, with the same return
-- values, and where Redis differs (expired keys are gone, no eviction on
-- our side, SCAN's order) what it gives instead. Outside a handler every
-- operation blocks for at most the dict's timeout.
local core = require "moonwire.core"
local mw = require "moonwire"

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local port = tonumber(sh([[python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])']]))
local dir = sh("mktemp -d"):gsub("%s+$", "")
local function start_redis()
  assert(os.execute(string.format(
    "redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize yes " ..
    "--pidfile %s/redis.pid --logfile %s/redis.log --dir %s", port, dir, dir, dir)))
  for _ = 1, 100 do
    if sh(string.format("redis-cli -p %d ping 2>/dev/null", port)):find("PONG") then return end
    os.execute("sleep 0.05")
  end
  error("redis-server did not start on port " .. port)
end
local function stop_redis()
  os.execute(string.format("redis-cli -p %d shutdown nosave >/dev/null 2>&1", port))
  for _ = 1, 100 do
    if not sh(string.format("redis-cli -p %d ping 2>/dev/null", port)):find("PONG") then return end
    os.execute("sleep 0.05")
  end
end
local function cli(args) return sh(string.format("redis-cli -p %d %s", port, args)) end

local function sleep(s) os.execute("sleep " .. s) end

start_redis()
local url = string.format("redis://127.0.0.1:%d/3", port)
core.shared_define("rspec", {redis = url, prefix = "spec:", timeout = 1})
core.shared_define("rother", {redis = url}) -- prefix "rother:"

-- The first operation may find the connection still being made.
local function until_up(d)
  for _ = 1, 100 do
    local ok = d:set("__up", 1)
    if ok then d:delete("__up") return end
    sleep(0.02)
  end
  error("the dict never reached redis")
end

describe("mw.shared on redis", function()
  local d = mw.shared.rspec
  setup(function() until_up(d); until_up(mw.shared.rother) end)
  teardown(function() stop_redis(); os.execute("rm -rf " .. dir) end)
  before_each(function() d:flush_all() end)

  it("keeps its keys under its prefix, in the URL's database", function()
    d:set("k", "v")
    assert.truthy(cli("-n 3 exists spec:k"):find("1"))
    assert.truthy(cli("-n 0 exists spec:k"):find("0"))
    mw.shared.rother:set("k", "w")
    assert.equal("v", d:get("k"))
    assert.equal("w", mw.shared.rother:get("k"))
    d:flush_all() -- its own prefix only
    assert.equal("w", mw.shared.rother:get("k"))
    assert.equal("moonwire.shared: rspec", tostring(d))
  end)

  it("gets and sets every value type, keeping integers and floats apart", function()
    assert.is_nil(d:get("missing"))
    assert.equal(1, select("#", d:get("missing")))
    local ok, err, forcible = d:set("s", "a\0b")
    assert.is_true(ok); assert.is_nil(err); assert.is_false(forcible)
    assert.equal("a\0b", d:get("s"))
    assert.equal(1, select("#", d:get("s")))
    d:set("i", 42)
    assert.equal(math.type(d:get("i")), "integer")
    d:set("big", math.maxinteger)
    assert.equal(math.maxinteger, d:get("big"))
    d:set("f", 42.0)
    assert.equal(math.type(d:get("f")), "float")
    d:set("pi", math.pi)
    assert.equal(math.pi, d:get("pi"))
    d:set("t", true); d:set("b", false)
    assert.is_true(d:get("t")); assert.is_false(d:get("b"))
    d:set(7, "seven")
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
    assert.is_false((pcall(d.get, d, {})))
    assert.is_false((pcall(d.set, d, "k", 1, -1)))
  end)

  it("stores flags and reports them; get_stale never sees a stale value", function()
    d:set("k", "v", 0, 7)
    assert.same({"v", 7}, {d:get("k")})
    assert.same({"v", 7, false}, {d:get_stale("k")})
    d:set("k", "v")
    assert.same({"v", nil, false}, {d:get_stale("k")})
    assert.equal(3, select("#", d:get_stale("k")))
  end)

  it("expires values with PX, and the expired are gone", function()
    d:set("k", "v", 0.05, 3)
    local ttl = d:ttl("k")
    assert.is_true(ttl > 0 and ttl <= 0.05, ttl)
    sleep(0.1)
    assert.is_nil(d:get("k"))
    assert.is_nil(d:get_stale("k"))
    assert.same({nil, "not found"}, {d:ttl("k")})
    d:set("n", 1)
    assert.equal(0, d:ttl("n"))
    assert.is_true(d:expire("n", 10))
    assert.is_true(d:ttl("n") > 9.9)
    assert.is_true(d:expire("n", 0))
    assert.equal(0, d:ttl("n"))
    assert.same({nil, "not found"}, {d:expire("missing", 1)})
    assert.equal(0, d:flush_expired())
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
    d:set("x", 1, 0.05)
    sleep(0.1)
    assert.same({true, nil, false}, {d:add("x", 2)}) -- expired: absent
  end)

  it("increments with OpenResty's results, exactly to 64 bits", function()
    assert.same({nil, "not found"}, {d:incr("c", 1)})
    assert.same({11, nil, false}, {d:incr("c", 1, 10)})
    assert.same({12}, {d:incr("c", 1)})
    assert.equal("integer", math.type(d:incr("c", 1)))
    assert.equal(13.5, d:incr("c", 0.5))
    assert.equal(-1.5, d:incr("c", -15))
    assert.equal(5, d:incr("s", "5", 0))
    d:set("str", "x")
    assert.same({nil, "not a number"}, {d:incr("str", 1)})
    assert.is_false((pcall(d.incr, d, "c", "x")))
    assert.is_false((pcall(d.incr, d, "n", 1, nil, 5)))
    d:set("big", (1 << 62) + 1)
    assert.equal((1 << 62) + 2, d:incr("big", 1))
    d:set("fl", 7, 0, 9)
    d:incr("fl", 1)
    assert.same({8, 9}, {d:get("fl")}) -- flags stay
    d:incr("t", 1, 0, 0.05)
    assert.is_true(d:ttl("t") > 0)
    sleep(0.1)
    assert.equal(1, d:incr("t", 1, 0))
    assert.equal(0, d:ttl("t"))
  end)

  it("keeps lists on Redis lists", function()
    assert.equal(0, d:llen("l"))
    assert.is_nil(d:lpop("l"))
    assert.equal(1, d:rpush("l", "b"))
    assert.equal(2, d:lpush("l", "a"))
    assert.equal(3, d:rpush("l", 3))
    assert.equal(4, d:rpush("l", 4.5))
    assert.same({nil, "bad value type"}, {d:rpush("l", true)})
    assert.equal(4, d:llen("l"))
    assert.truthy(cli("-n 3 type spec:l"):find("list"))
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

  it("lists keys with SCAN and flushes its prefix", function()
    for i = 1, 5 do d:set("k" .. i, i) end
    local keys = d:get_keys()
    table.sort(keys)
    assert.same({"k1", "k2", "k3", "k4", "k5"}, keys)
    assert.equal(2, #d:get_keys(2))
    assert.equal(5, #d:get_keys(0))
    d:flush_all()
    assert.is_nil(d:get("k1"))
    assert.equal(0, #d:get_keys())
  end)

  it("walks many keys in bounded SCAN steps", function()
    for i = 1, 2500 do d:set("m" .. i, i) end
    mw.shared.rother:set("stay", 1)
    assert.equal(2500, #d:get_keys(0))
    assert.equal(1024, #d:get_keys())
    assert.equal(1500, #d:get_keys(1500))
    local seen = {}
    for _, k in ipairs(d:get_keys(0)) do
      assert.is_nil(seen[k]); seen[k] = true
    end
    d:flush_all()
    assert.equal(0, #d:get_keys(0))
    assert.equal(1, mw.shared.rother:get("stay"))
  end)

  it("answers random operations exactly as the memory dict does", function()
    -- A differential check: the same operations on a memory dict and on
    -- Redis, every result compared (ttl by kind only: the clocks differ).
    -- Integers stay away from 2^63, where the memory dict wraps and Redis
    -- refuses (docs/lua-api.md).
    core.shared_define("rmem", 1024 * 1024)
    local m = mw.shared.rmem
    local keys = {"a", "b", "c", "d"}
    local vals = {1, 2, -3, 0.5, 1e300, 1 << 40, "s", "", true, false}
    local ops = {"get", "get_stale", "set", "safe_set", "add", "safe_add", "replace", "delete",
                 "incr", "lpush", "rpush", "lpop", "rpop", "llen", "ttl", "expire"}
    local function show(t)
      local o = {}
      for i = 1, t.n do o[i] = tostring(t[i]) .. ":" .. tostring(math.type(t[i])) end
      return table.concat(o, ",")
    end
    for seed = 1, 2 do
      math.randomseed(seed)
      m:flush_all(); m:flush_expired(); d:flush_all()
      for i = 1, 1500 do
        local op, k = ops[math.random(#ops)], keys[math.random(#keys)]
        local v = vals[math.random(#vals + 1)] -- nil too
        local args
        if op == "incr" then
          args = {k, ({1, -2, 0.25, "3"})[math.random(4)]}
          if math.random(2) == 1 then args[3] = ({0, 10, 1.5})[math.random(3)] end
        elseif op:find("set$") or op:find("add$") or op == "replace" then
          args = {k, v, 0, math.random(0, 1) * 7}
        elseif op == "lpush" or op == "rpush" then args = {k, v}
        elseif op == "expire" then args = {k, math.random(0, 1) * 100}
        else args = {k} end
        local a = table.pack(pcall(m[op], m, table.unpack(args, 1, 4)))
        local b = table.pack(pcall(d[op], d, table.unpack(args, 1, 4)))
        if op == "ttl" then
          if a[2] and a[2] > 0 then a[2] = "left" end
          if b[2] and b[2] > 0 then b[2] = "left" end
        end
        assert.equal(show(a), show(b), ("seed %d, op %d: %s(%s)"):format(
          seed, i, op, show(table.pack(table.unpack(args, 1, 4)))))
      end
    end
  end)

  it("reports Redis's memory as capacity and free space", function()
    cli("config set maxmemory 0")
    assert.equal(0, d:capacity())
    assert.equal(0, d:free_space())
    cli("config set maxmemory 100000000")
    assert.equal(100000000, d:capacity())
    local free = d:free_space()
    assert.is_true(free > 0 and free < 100000000, free)
    cli("config set maxmemory 0")
  end)

  it("sends scripts as EVALSHA, and as EVAL once when Redis has lost them", function()
    local function calls(cmd)
      return tonumber(cli("info commandstats"):match("cmdstat_" .. cmd .. ":calls=(%d+)")) or 0
    end
    d:set("k", 1) -- loaded, whatever happened before
    cli("config resetstat")
    d:set("k", 1); d:set("k", 2)
    assert.equal(2, calls("evalsha")) -- our SHA1 is Redis's
    assert.equal(0, calls("eval"))
    cli("script flush")
    assert.same({true, nil, false}, {d:set("k", 2)})
    assert.equal(1, calls("eval"))
    assert.same({true, nil, false}, {d:set("k", 3)})
    assert.equal(1, calls("eval"))
    assert.equal(4, d:incr("k", 1))
  end)

  it("fails fast while Redis is down and recovers when it is back", function()
    d:set("k", "before")
    stop_redis()
    local t0 = os.time()
    local v, err = d:get("k")
    assert.is_nil(v)
    assert.truthy(err:match("^redis: "), err)
    -- while down: refused at once, with the reason
    sleep(0.2)
    local ok, err2 = d:set("k", 1)
    assert.is_false(ok)
    assert.equal("redis: connection refused", err2)
    assert.is_true(os.time() - t0 <= 3)
    start_redis()
    local back
    for _ = 1, 100 do
      if d:set("k", "after") then back = true break end
      sleep(0.05)
    end
    assert.is_true(back)
    assert.equal("after", d:get("k"))
  end)

  it("times out a stopped Redis after its timeout", function()
    local pid = sh("cat " .. dir .. "/redis.pid"):gsub("%s+$", "")
    os.execute("kill -STOP " .. pid)
    local t0 = core.wall_now()
    local v, err = d:get("k")
    local took = core.wall_now() - t0
    os.execute("kill -CONT " .. pid)
    assert.is_nil(v)
    assert.equal("redis: timeout", err)
    assert.is_true(took >= 0.9 and took < 3, took)
    assert.is_true((d:set("k", 1)))
  end)

  it("rejects a bad URL at definition", function()
    local ok, err = pcall(core.shared_define, "rbad", {redis = "redis://h:99999"})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("bad port", 1, true), err)
  end)
end)
