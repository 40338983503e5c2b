-- Specs for moonwire.pipeline's policy, with a fake clock, ctx and log (in a
-- plain lua5.4: no server, so steps are plain functions).
local pipeline = require "moonwire.pipeline"
local core = require "moonwire.core"
local status = require "moonwire.status"

local clock, slept, logs
local function fake_env()
  clock, slept, logs = 1000, {}, {}
  pipeline.env = {
    now = function() return clock end,
    sleep = function(s) slept[#slept + 1] = s; clock = clock + s end,
    log = function(level, msg, fields) logs[#logs + 1] = {level = level, msg = msg, fields = fields} end,
    metrics_on = function() return false end,
  }
end

-- A ctx whose deadline is `left` seconds away on the fake clock.
local function ctx_with(left, is_cancelled)
  local deadline = left and clock + left
  return {
    remaining = function() return deadline and math.max(0, deadline - clock) or math.huge end,
    cancelled = function() return is_cancelled and is_cancelled() or false end,
  }
end

local function info_of(err)
  for _, d in ipairs(err.details or {}) do
    if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" then return d end
  end
end

-- Three steps that record what ran, in order, into seen; fail_at names a
-- step whose run returns a status error.
local function saga(seen, fail_at, code)
  local function step(name)
    return {name = name,
      run = function(state)
        seen[#seen + 1] = "run:" .. name
        if name == fail_at then return nil, core.status(code or 9, name .. " refused") end
        return name .. "-id"
      end,
      undo = function(state) seen[#seen + 1] = "undo:" .. name .. ":" .. tostring(state[name]) end}
  end
  return pipeline.new("order", {step "reserve", step "charge", step "ship"})
end

describe("moonwire.pipeline", function()
  before_each(fake_env)

  it("runs the steps in order, storing each value under its name", function()
    local seen = {}
    local state, err = saga(seen):run({sku = "tea"}, ctx_with(nil))
    assert.is_nil(err)
    assert.same({"run:reserve", "run:charge", "run:ship"}, seen)
    assert.same({sku = "tea", reserve = "reserve-id", charge = "charge-id", ship = "ship-id"}, state)
    assert.equal("pipeline ok", logs[#logs].msg)
    assert.matches("reserve:ok.*charge:ok.*ship:ok", logs[#logs].fields.steps)
  end)

  for _, case in ipairs {
    {"reserve", {"run:reserve"}, ""},
    {"charge", {"run:reserve", "run:charge", "undo:reserve:reserve-id"}, "reserve"},
    {"ship", {"run:reserve", "run:charge", "run:ship", "undo:charge:charge-id",
              "undo:reserve:reserve-id"}, "charge,reserve"},
  } do
    it("undoes what completed, newest first, when " .. case[1] .. " fails", function()
      local seen = {}
      local state, err = saga(seen, case[1]):run({}, ctx_with(nil))
      assert.is_nil(state)
      assert.same(case[2], seen)
      assert.is_true(status.is_status(err))
      assert.equal(9, err.code) -- the original failure's code and message
      assert.equal(case[1] .. " refused", err.message)
      local info = info_of(err)
      assert.equal("PIPELINE_FAILED", info.reason)
      assert.equal(case[1], info.metadata.failed_step)
      assert.equal(case[3], info.metadata.compensated)
      assert.equal("", info.metadata.undo_failed)
    end)
  end

  it("records a failing undo, retries it, and still runs the others", function()
    local seen, tries = {}, 0
    local p = pipeline.new("o", {
      {name = "a", run = function() return 1 end, undo = function() seen[#seen + 1] = "undo:a" end},
      {name = "b", run = function() return 2 end,
       undo = function() tries = tries + 1; error("refund service down") end},
      {name = "c", run = function() error("boom") end},
    }, {undo_attempts = 3, undo_timeout = 5})
    local state, err = p:run({}, ctx_with(nil))
    assert.is_nil(state)
    assert.equal(13, err.code) -- a raised non-status error: INTERNAL, its text not sent
    assert.not_matches("boom", err.message)
    assert.equal(3, tries)
    assert.same({"undo:a"}, seen)
    local info = info_of(err)
    assert.equal("a", info.metadata.compensated)
    assert.equal("b", info.metadata.undo_failed)
    assert.equal("undo_failed", logs[#logs].msg:match "pipeline (.*)")
  end)

  it("keeps an undo within undo_timeout even past the call's deadline", function()
    local tries = 0
    local p = pipeline.new("o", {
      {name = "a", run = function() return 1 end,
       undo = function() tries = tries + 1; clock = clock + 0.4; return nil, core.status(14, "down") end},
      {name = "b", run = function() clock = clock + 10; return nil, core.status(4, "slow") end},
    }, {undo_attempts = 10, undo_timeout = 1})
    local _, err = p:run({}, ctx_with(2))
    assert.equal(4, err.code)
    assert.is_true(tries >= 2 and tries <= 3)
    assert.equal("a", info_of(err).metadata.undo_failed)
  end)

  it("retries a step on a retryable code, with backoff", function()
    local n = 0
    local p = pipeline.new("o", {{name = "a", retry = {max_attempts = 3, initial_backoff = 0.1},
      run = function() n = n + 1; if n < 3 then return nil, core.status(14, "busy") end; return "ok" end}})
    local state = p:run({}, ctx_with(nil))
    assert.equal("ok", state.a)
    assert.equal(3, n)
    assert.equal(2, #slept)
  end)

  it("does not retry a code outside retry.codes", function()
    local n = 0
    local p = pipeline.new("o", {{name = "a", retry = {max_attempts = 3},
      run = function() n = n + 1; return nil, core.status(9, "no") end}})
    local _, err = p:run({}, ctx_with(nil))
    assert.equal(1, n)
    assert.equal(9, err.code)
  end)

  it("gives each step its timeout capped by the time left, less the reserve", function()
    local budgets = {}
    local p = pipeline.new("o", {
      {name = "a", timeout = 0.5, run = function(_, _, t) budgets[1] = t; return 1 end},
      {name = "b", timeout = 30, run = function(_, _, t) budgets[2] = t; return 1 end},
    }, {reserve = 1})
    p:run({}, ctx_with(3))
    assert.near(0.5, budgets[1], 1e-9)
    assert.near(2, budgets[2], 1e-9)
  end)

  it("fails DEADLINE_EXCEEDED without running a step when no time is left", function()
    local ran, undone = false, false
    local p = pipeline.new("o", {
      {name = "a", run = function() clock = clock + 1.5; return 1 end, undo = function() undone = true end},
      {name = "b", run = function() ran = true end},
    }, {reserve = 0.5})
    local _, err = p:run({}, ctx_with(2))
    assert.is_false(ran)
    assert.is_true(undone)
    assert.equal(4, err.code)
    assert.equal("b", info_of(err).metadata.failed_step)
    assert.matches("b:skipped", logs[#logs].fields.steps)
  end)

  it("does not start a step with less than its min_time left", function()
    local ran = false
    local p = pipeline.new("o", {
      {name = "a", run = function() clock = clock + 0.9; return 1 end},
      {name = "b", min_time = 0.2, run = function() ran = true end},
    }, {reserve = 0})
    local _, err = p:run({}, ctx_with(1))
    assert.is_false(ran)
    assert.equal(4, err.code)
  end)

  it("compensates a cancelled call and marks it", function()
    local gone, undone = false, false
    local p = pipeline.new("o", {
      {name = "a", run = function() return 1 end, undo = function() undone = true end},
      {name = "b", run = function()
        gone = true
        local e = core.status(1, "the call was cancelled"); e.cancelled = true
        error(e, 0)
      end},
    })
    local _, err = p:run({}, ctx_with(nil, function() return gone end))
    assert.is_true(undone)
    assert.equal(1, err.code)
    assert.is_true(status.is_cancelled(err))
    assert.equal("true", info_of(err).metadata.cancelled)
  end)

  it("runs the undos inside one shield sized by their number and undo_timeout", function()
    local windows, inside = {}, {}
    local shielding = false
    pipeline.env.shield = function(secs, fn)
      windows[#windows + 1] = secs
      shielding = true
      local r = fn()
      shielding = false
      return r
    end
    local function step(name, fail)
      return {name = name, run = function() if fail then return nil, core.status(9, "no") end return 1 end,
              undo = function() inside[#inside + 1] = name .. ":" .. tostring(shielding) end}
    end
    local p = pipeline.new("o", {step "a", step "b", step("c", true)}, {undo_timeout = 0.5})
    assert.is_nil(p:run({}, ctx_with(nil)))
    assert.same({"b:true", "a:true"}, inside)
    assert.equal(1, #windows)
    assert.near(2 * 0.5 + 0.1, windows[1], 1e-9)
    -- nothing to undo: no shield
    windows = {}
    assert.is_nil(pipeline.new("o", {step("x", true)}):run({}, ctx_with(nil)))
    assert.same({}, windows)
  end)

  it("keeps the original failure's own details", function()
    local p = pipeline.new("o", {{name = "a", run = function()
      return nil, core.status(9, "no", {{["@type"] = "type.googleapis.com/google.rpc.ErrorInfo",
                                         reason = "OUT_OF_STOCK", domain = "shop"}})
    end}})
    local _, err = p:run({}, ctx_with(nil))
    assert.equal(2, #err.details)
    assert.equal("OUT_OF_STOCK", err.details[1].reason)
    assert.equal("PIPELINE_FAILED", err.details[2].reason)
  end)

  describe("parallel groups", function()
    local function future(res, err, log, name)
      return {wait = function() log[#log + 1] = "wait:" .. name; return res, err end,
              cancel = function() log[#log + 1] = "cancel:" .. name end}
    end
    it("starts every member before waiting, and finishes each", function()
      local log = {}
      local p = pipeline.new("o", {{parallel = {
        {name = "x", start = function() log[#log + 1] = "start:x"; return future({id = 1}, nil, log, "x") end,
         finish = function(_, _, res) return res.id * 10 end},
        {name = "y", start = function() log[#log + 1] = "start:y"; return future({id = 2}, nil, log, "y") end},
      }}})
      local state = p:run({}, ctx_with(nil))
      assert.same({"start:x", "start:y", "wait:x", "wait:y"}, log)
      assert.equal(10, state.x)
      assert.same({id = 2}, state.y)
    end)
    it("undoes the members that succeeded and the steps before", function()
      local log = {}
      local p = pipeline.new("o", {
        {name = "a", run = function() return 1 end, undo = function() log[#log + 1] = "undo:a" end},
        {parallel = {
          {name = "x", start = function() return future({}, nil, log, "x") end,
           undo = function() log[#log + 1] = "undo:x" end},
          {name = "y", start = function() return future(nil, core.status(14, "down"), log, "y") end,
           undo = function() log[#log + 1] = "undo:y" end},
        }}})
      local _, err = p:run({}, ctx_with(nil))
      assert.same({"wait:x", "wait:y", "undo:x", "undo:a"}, log)
      assert.equal(14, err.code)
      assert.equal("y", info_of(err).metadata.failed_step)
      assert.equal("x,a", info_of(err).metadata.compensated)
    end)
  end)

  describe("validation", function()
    local function ok() return 1 end
    local cases = {
      {"a name expected", function() pipeline.new({{name = "a", run = ok}}) end},
      {"array of steps", function() pipeline.new("p", {}) end},
      {"defined twice", function() pipeline.new("p", {{name = "a", run = ok}, {name = "a", run = ok}}) end},
      {"run %(a function%) is required", function() pipeline.new("p", {{name = "a"}}) end},
      {"unknown key 'udno'", function() pipeline.new("p", {{name = "a", run = ok, udno = ok}}) end},
      {"timeout must be", function() pipeline.new("p", {{name = "a", run = ok, timeout = -1}}) end},
      {"max_attempts", function() pipeline.new("p", {{name = "a", run = ok, retry = {max_attempts = 0}}}) end},
      {"unknown option 'undo'", function() pipeline.new("p", {{name = "a", run = ok}}, {undo = 1}) end},
      {"undo_timeout must be", function() pipeline.new("p", {{name = "a", run = ok}}, {undo_timeout = 0}) end},
      {"have start %(and finish%), not run", function() pipeline.new("p", {{parallel = {{name = "x", run = ok}}}}) end},
    }
    for _, c in ipairs(cases) do
      it("raises: " .. c[1], function()
        local okk, e = pcall(c[2])
        assert.is_false(okk)
        assert.matches(c[1], e)
        assert.matches("pipeline_spec.lua:%d+: mw.pipeline", e) -- at the caller's line
      end)
    end
    it("takes the {name = ..., steps...} form", function()
      local p = pipeline.new {name = "p", {name = "a", run = ok}}
      assert.equal("p", p.name)
      assert.equal(1, p:run({}, ctx_with(nil)).a)
    end)
  end)
end)
