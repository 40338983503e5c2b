--- moonwire.pipeline: a sequence of steps with compensation (a saga).
--
--   local order = mw.pipeline("order", {
--     {name = "reserve", run = reserve, undo = release, timeout = 0.5,
--      retry = {max_attempts = 3, initial_backoff = 0.05, max_backoff = 0.2}},
--     {name = "charge", run = charge, undo = refund},
--     {parallel = {
--       {name = "email", start = function(state, ctx, t) return mail:start(...) end},
--       {name = "ship", start = ..., finish = function(state, ctx, res) return res.id end,
--        undo = cancel_shipment},
--     }},
--   }, {undo_timeout = 1, undo_attempts = 3})
--   local state, err = order:run({sku = req.sku}, ctx)
--   if not state then mw.fail(err) end
--
-- All of it is policy over what handlers already have (mw.client, mw.sleep,
-- the call's deadline): the runtime cannot preempt a step, so a step is
-- given its time budget (its third argument) to pass on as its calls'
-- timeout, and the pipeline checks the budget between steps.
local core = require "moonwire.core"
local status = require "moonwire.status"
local details = require "moonwire.details"
local metrics = require "moonwire.metrics"

local type, pairs, ipairs, tostring, error, pcall = type, pairs, ipairs, tostring, error, pcall
local min, max, random, huge = math.min, math.max, math.random, math.huge
local mtype = math.type

local M = {}

local codes = core.codes
local UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, INTERNAL =
  codes.UNAVAILABLE, codes.DEADLINE_EXCEEDED, codes.CANCELLED, codes.INTERNAL

-- What the pipeline waits and logs with; the specs replace it (a fake
-- clock, recorded sleeps and log lines).
M.env = {
  now = core.now,
  sleep = core.sleep,
  log = function(level, msg, fields) core.log(level, msg, fields) end,
  metrics_on = core.metrics_on,
  -- Compensation runs in a shield, so that undos calling other services
  -- still run after the call was cancelled or its deadline passed.
  shield = function(secs, fn)
    if core.in_handler() then return core.shield(secs, fn) end
    return fn()
  end,
}

local STEP_KEYS = {name = true, run = true, undo = true, timeout = true, retry = true,
                   start = true, finish = true, min_time = true}
local RETRY_KEYS = {max_attempts = true, initial_backoff = true, max_backoff = true,
                    codes = true}
local OPT_KEYS = {name = true, undo_timeout = true, undo_attempts = true, reserve = true}

-- Raised without a position, then again from M.new at its caller's line.
local function bad(msg) error({pipeline_misuse = "mw.pipeline: " .. msg}, 0) end

local function check_seconds(v, what, lo, hi)
  if v == nil then return end
  if type(v) ~= "number" or v ~= v or v < lo or v > hi then
    bad(("%s must be a number of seconds from %g to %g, got %s"):format(what, lo, hi, tostring(v)))
  end
end

local function check_retry(r, where)
  if r == nil then return {max_attempts = 1, initial_backoff = 0, max_backoff = 0, codes = {}} end
  if type(r) ~= "table" then bad(where .. ": retry must be a table") end
  for k in pairs(r) do
    if not RETRY_KEYS[k] then
      bad(where .. ": unknown retry option '" .. tostring(k) ..
          "' (max_attempts, initial_backoff, max_backoff, codes)")
    end
  end
  local n = r.max_attempts or 3
  if mtype(n) ~= "integer" or n < 1 or n > 10 then
    bad(where .. ": retry.max_attempts must be an integer from 1 to 10")
  end
  check_seconds(r.initial_backoff, where .. ": retry.initial_backoff", 0, 60)
  check_seconds(r.max_backoff, where .. ": retry.max_backoff", 0, 300)
  local set = {}
  if r.codes == nil then
    set[UNAVAILABLE] = true
  else
    if type(r.codes) ~= "table" then bad(where .. ": retry.codes must be an array") end
    for _, c in ipairs(r.codes) do
      local code, why = status.code_of(c)
      if not code or code == 0 then bad(where .. ": retry.codes: " .. (why or "OK is not an error")) end
      set[code] = true
    end
  end
  return {max_attempts = n, initial_backoff = r.initial_backoff or 0.05,
          max_backoff = r.max_backoff or 1, codes = set}
end

local function check_step(s, i, names, in_group)
  local where = "step " .. i
  if type(s) ~= "table" then bad(where .. ": a table expected, got " .. type(s)) end
  for k in pairs(s) do
    if not STEP_KEYS[k] then
      bad(where .. ": unknown key '" .. tostring(k) ..
          "' (name, run, undo, timeout, min_time, retry; start, finish in a parallel group)")
    end
  end
  if type(s.name) ~= "string" or not s.name:match "^[%w_.-]+$" then
    bad(where .. ": name (letters, digits, _ . -) is required")
  end
  where = "step '" .. s.name .. "'"
  if names[s.name] then bad(where .. " is defined twice: step names must be unique") end
  names[s.name] = true
  if in_group then
    if s.run ~= nil then bad(where .. ": a parallel group's steps have start (and finish), not run") end
    if type(s.start) ~= "function" then
      bad(where .. ": start(state, ctx, timeout) returning an mw.client future is required")
    end
    if s.finish ~= nil and type(s.finish) ~= "function" then bad(where .. ": finish must be a function") end
    if s.retry ~= nil then bad(where .. ": a parallel group's steps are not retried") end
  else
    if s.start ~= nil or s.finish ~= nil then
      bad(where .. ": start and finish belong in a parallel group")
    end
    if type(s.run) ~= "function" then bad(where .. ": run (a function) is required") end
  end
  if s.undo ~= nil and type(s.undo) ~= "function" then bad(where .. ": undo must be a function") end
  check_seconds(s.timeout, where .. ": timeout", 0.001, 3600)
  check_seconds(s.min_time, where .. ": min_time", 0, 3600)
  return {name = s.name, run = s.run, undo = s.undo, start = s.start, finish = s.finish,
          timeout = s.timeout, min_time = s.min_time or 0, retry = not in_group and check_retry(s.retry, where) or nil}
end

local Pipeline = {}
Pipeline.__index = Pipeline

local m_runs, m_steps, declared
local function declare_metrics()
  if declared then return end
  declared = true
  if not (M.env.metrics_on and M.env.metrics_on()) then return end
  m_runs = metrics.counter("moonwire_pipeline_runs_total",
    "Pipeline runs, by outcome (ok, compensated, undo_failed).", {"pipeline", "outcome"})
  m_steps = metrics.histogram("moonwire_pipeline_step_seconds",
    "Time a pipeline step took (its retries included), by outcome.",
    {"pipeline", "step", "outcome"})
end

--- mw.pipeline(name, steps [, opts]) or mw.pipeline{name = ..., steps...}.
function M.new(name, steps, opts)
  if type(name) == "table" and steps == nil then
    steps, name = name, name.name
  end
  if type(name) ~= "string" or name == "" then
    error("mw.pipeline: a name expected (mw.pipeline(name, steps) or {name = ..., ...})", 2)
  end
  if type(steps) ~= "table" or steps[1] == nil then
    error("mw.pipeline: an array of steps expected", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("mw.pipeline: options must be a table", 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPT_KEYS[k] then
      error("mw.pipeline: unknown option '" .. tostring(k) ..
            "' (undo_timeout, undo_attempts, reserve)", 2)
    end
  end
  local function check_opts()
    check_seconds(opts.undo_timeout, "undo_timeout", 0.001, 60)
    check_seconds(opts.reserve, "reserve", 0, 60)
    local a = opts.undo_attempts
    if a ~= nil and (mtype(a) ~= "integer" or a < 1 or a > 10) then
      bad("undo_attempts must be an integer from 1 to 10")
    end
  end
  local okk, e = pcall(check_opts)
  if not okk then error(type(e) == "table" and e.pipeline_misuse or e, 2) end
  local names, list = {}, {}
  local function walk()
    for i, s in ipairs(steps) do
      if type(s) == "table" and s.parallel ~= nil then
        for k in pairs(s) do
          if k ~= "parallel" then bad("step " .. i .. ": a parallel group has only 'parallel'") end
        end
        if type(s.parallel) ~= "table" or s.parallel[1] == nil then
          bad("step " .. i .. ": parallel must be an array of steps")
        end
        local g = {}
        for j, m in ipairs(s.parallel) do g[j] = check_step(m, i .. "." .. j, names, true) end
        list[i] = {group = g}
      else
        list[i] = check_step(s, i, names, false)
      end
    end
  end
  okk, e = pcall(walk)
  if not okk then error(type(e) == "table" and e.pipeline_misuse or e, 2) end
  declare_metrics()
  local undo_timeout = opts.undo_timeout or 1
  return setmetatable({name = name, steps = list, undo_timeout = undo_timeout,
                       undo_attempts = opts.undo_attempts or 3,
                       reserve = opts.reserve or undo_timeout}, Pipeline)
end

-- Seconds left to the steps: the call's remaining time less the reserve
-- held back for compensation (huge without a deadline).
local function time_left(self, ctx)
  local r = ctx and ctx.remaining and ctx:remaining() or huge
  if r == huge then return huge end
  return r - self.reserve
end

local function backoff(policy, n)
  return random() * min(policy.initial_backoff * 2 ^ (n - 1), policy.max_backoff)
end

-- A step's failure as a status error: a status error stays as it is;
-- anything else raised becomes INTERNAL, its text logged, not sent.
local function as_status(self, step, e)
  if status.is_status(e) then return e end
  M.env.log("error", "pipeline step raised", {pipeline = self.name, step = step,
                                              error = tostring(e)})
  return core.status(INTERNAL, ("pipeline %s: step '%s' failed"):format(self.name, step))
end

local function cancelled(ctx, err)
  return (err and status.is_cancelled(err)) or (ctx and ctx.cancelled and ctx:cancelled())
end

-- Runs one sequential step with its retries: ok, value | false, err.
local function run_step(self, s, state, ctx)
  local attempt = 1
  while true do
    -- A step that cannot have what it needs is not started: starting it
    -- would only leave more to undo.
    local left = time_left(self, ctx)
    if left <= s.min_time then
      local e = core.status(DEADLINE_EXCEEDED,
        ("pipeline %s: no time left for step '%s'"):format(self.name, s.name))
      e.skipped = true
      return false, e
    end
    local budget = s.timeout and min(s.timeout, left) or left
    local ok, v, e = pcall(s.run, state, ctx, budget ~= huge and budget or nil)
    local err
    if not ok then err = as_status(self, s.name, v)
    elseif v == nil and e ~= nil then err = as_status(self, s.name, e)
    else return true, v end
    local policy = s.retry
    if cancelled(ctx, err) or attempt >= policy.max_attempts or not policy.codes[err.code] then
      err.attempts = attempt
      return false, err
    end
    local delay = backoff(policy, attempt)
    if delay >= time_left(self, ctx) then
      err.attempts = attempt
      return false, err
    end
    if delay > 0 then
      local slept, se = pcall(M.env.sleep, delay)
      if not slept then return false, as_status(self, s.name, se) end
    end
    attempt = attempt + 1
  end
end

-- A parallel group: every member's future started, then all waited.
-- Returns the members that succeeded and the first failure (nil if none).
local function run_group(self, g, state, ctx)
  local left = time_left(self, ctx)
  local futures, done, first = {}, {}, nil
  local need = 0
  for _, m in ipairs(g) do need = max(need, m.min_time) end
  if left <= need then
    return done, core.status(DEADLINE_EXCEEDED,
      ("pipeline %s: no time left for step '%s'"):format(self.name, g[1].name)), g[1].name
  end
  for i, m in ipairs(g) do
    local budget = m.timeout and min(m.timeout, left) or left
    local ok, f = pcall(m.start, state, ctx, budget ~= huge and budget or nil)
    if not ok or type(f) ~= "table" or type(f.wait) ~= "function" then
      first = first or {as_status(self, m.name, ok and
        ("start must return an mw.client future, got " .. type(f)) or f), m.name}
      break
    end
    futures[i] = f
  end
  for i, m in ipairs(g) do
    local f = futures[i]
    if f then
      if first then
        pcall(f.cancel, f)
        -- Started but its outcome unknown: waited for, so that what it did
        -- is known and undone.
      end
      local ok, res, err = pcall(f.wait, f)
      if ok and res ~= nil then
        local v = res
        if m.finish then
          local fok, fv, fe = pcall(m.finish, state, ctx, res)
          if not fok then err = as_status(self, m.name, fv)
          elseif fv == nil and fe ~= nil then err = as_status(self, m.name, fe)
          else v = fv end
        end
        if not err then
          done[#done + 1] = {step = m, value = v}
        end
      else
        err = as_status(self, m.name, ok and err or res)
      end
      if err and not first then first = {err, m.name} end
    end
  end
  if first then return done, first[1], first[2] end
  return done
end

-- Runs one undo with its retries, bounded by undo_timeout from its start
-- (not by the call's deadline): ok, or false and the last error's text.
local function run_undo(self, s, state, ctx, err)
  local env = M.env
  local t_end = env.now() + self.undo_timeout
  local attempt, last = 1, nil
  while true do
    local ok, v, e = pcall(s.undo, state, ctx, err, self.undo_timeout)
    if ok and not (v == nil and e ~= nil) then return true end
    last = ok and e or v
    if attempt >= self.undo_attempts then break end
    local delay = random() * min(0.05 * 2 ^ (attempt - 1), 0.5)
    if env.now() + delay >= t_end then break end
    -- A cancelled call's waits raise at once: nothing to wait for then.
    if not pcall(env.sleep, delay) then break end
    attempt = attempt + 1
  end
  local text = status.is_status(last) and (last.message or tostring(last.code)) or tostring(last)
  return false, text, attempt
end

--- p:run(state, ctx) -> state | nil, err (the original failure, with the
-- compensation's outcome in an ErrorInfo added to its details).
function Pipeline:run(state, ctx)
  if state == nil then state = {} end
  if type(state) ~= "table" then
    error("bad argument #1 to 'run' (a state table expected, got " .. type(state) .. ")", 2)
  end
  local env = M.env
  local t0 = env.now()
  local completed, trail = {}, {}
  local failure, failed_step
  local function record(name, outcome, t, attempts)
    local d = env.now() - t
    trail[#trail + 1] = ("%s:%s:%.3fs%s"):format(name, outcome, d,
      attempts and attempts > 1 and ("x" .. attempts) or "")
    if m_steps then m_steps:observe(d, {self.name, name, outcome}) end
  end
  for _, s in ipairs(self.steps) do
    local t = env.now()
    if s.group then
      local done, err, who = run_group(self, s.group, state, ctx)
      for _, d in ipairs(done) do
        state[d.step.name] = d.value
        completed[#completed + 1] = d.step
        record(d.step.name, "ok", t)
      end
      if err then
        failure, failed_step = err, who
        record(who, "failed", t)
        break
      end
    else
      local ok, v = run_step(self, s, state, ctx)
      if not ok then
        failure, failed_step = v, s.name
        record(s.name, v.skipped and "skipped" or "failed", t, v.attempts)
        break
      end
      state[s.name] = v
      completed[#completed + 1] = s
      record(s.name, "ok", t)
    end
  end
  if not failure then
    if m_runs then m_runs:inc({self.name, "ok"}) end
    env.log("info", "pipeline ok", {pipeline = self.name, steps = table.concat(trail, " "),
                                    seconds = ("%.3f"):format(env.now() - t0)})
    return state
  end
  -- Compensation, newest first; a failing undo is recorded and the rest go on.
  -- It runs in a window of its own (each undo is bounded by undo_timeout),
  -- which a cancellation of the call does not cut short.
  local compensated, undo_failed = {}, {}
  local n_undo = 0
  for _, s in ipairs(completed) do if s.undo then n_undo = n_undo + 1 end end
  local function compensate()
    for i = #completed, 1, -1 do
      local s = completed[i]
      if s.undo then
        local t = env.now()
        local ok, why, attempts = run_undo(self, s, state, ctx, failure)
        if ok then
          compensated[#compensated + 1] = s.name
          record("undo:" .. s.name, "ok", t)
        else
          undo_failed[#undo_failed + 1] = s.name
          record("undo:" .. s.name, "failed", t, attempts)
          env.log("error", "pipeline undo failed", {pipeline = self.name, step = s.name,
                                                    error = why})
        end
      end
    end
  end
  if n_undo > 0 then
    local shield = env.shield or function(_, fn) return fn() end
    shield(min(n_undo * self.undo_timeout + 0.1, 3600), compensate)
  end
  local outcome = #undo_failed > 0 and "undo_failed" or "compensated"
  local md = {pipeline = self.name, failed_step = failed_step,
              compensated = table.concat(compensated, ","),
              undo_failed = table.concat(undo_failed, ",")}
  if cancelled(ctx, failure) then md.cancelled = "true" end
  local list = {}
  for _, d in ipairs(failure.details or {}) do list[#list + 1] = d end
  list[#list + 1] = details.ErrorInfo {reason = "PIPELINE_FAILED", domain = "moonwire",
                                       metadata = md}
  local err = core.status(failure.code, failure.message, list)
  err.cancelled = failure.cancelled
  err.attempts = failure.attempts
  err.failed_step, err.compensated, err.undo_failed = failed_step, compensated, undo_failed
  if m_runs then m_runs:inc({self.name, outcome}) end
  env.log(#undo_failed > 0 and "error" or "warn", "pipeline " .. outcome,
          {pipeline = self.name, failed_step = failed_step, code = failure.code,
           steps = table.concat(trail, " "), seconds = ("%.3f"):format(env.now() - t0)})
  return nil, err
end

return M
