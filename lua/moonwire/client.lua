--- moonwire.client: calling other gRPC services from handlers.
--
--   local inv = mw.client("127.0.0.1:50052")            -- cached per target
--   local res, err = inv:call("/shop.Inventory/Reserve", {sku = "tea"},
--                             {timeout = 0.5, metadata = {["x-tenant"] = "a"}})
--   local f = inv:start("/shop.Inventory/Reserve", {sku = "tea"})   -- in flight
--   local res, err = f:wait()
--   local s = inv:call("/shop.Inventory/Watch", {sku = "tea"})      -- a stream
--   for msg in s:iter() do ... end
--   local Inventory = inv:service "shop.Inventory"; Inventory.Reserve{sku = "tea"}
--
-- The mechanism is C's (core.client_*: channels, calls, waits, what a
-- child inherits from its parent); this file is the policy: timeouts,
-- retries with backoff, RetryInfo and pushback, the retry budget, which
-- methods are idempotent, the error objects, the metrics.
local core = require "moonwire.core"
local status = require "moonwire.status"
local metrics = require "moonwire.metrics"

local getinfo = debug.getinfo
local type, pairs, ipairs, tostring, tonumber, error = type, pairs, ipairs, tostring, tonumber, error
local setmetatable, rawget, select = setmetatable, rawget, select
local min, random = math.min, math.random
local unary, start, open, deadline_of = core.client_unary, core.client_start, core.client_open,
                                        core.client_deadline
local relay = core.client_relay
local wall = core.wall_now
local next, rawset = next, rawset
local method_info = core.client_method
local sleep = core.sleep
local now = core.now
local in_handler = core.in_handler

local M = {}

local RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
local UNAVAILABLE = 14

-- The config's client section, read when the generation's scripts load
-- (core.client_config exists only then); defaults outside a server.
local conf
local function config()
  if conf then return conf end
  conf = core.client_config and core.client_config() or nil
  if not conf then
    conf = {
      retry = {max_attempts = 1, initial_backoff = 0.1, max_backoff = 1, multiplier = 2,
               codes = {[UNAVAILABLE] = true}},
      budget = {tokens = 10, ratio = 0.1},
      methods = {},
    }
  end
  return conf
end
M.load_config = config

--- What is wrong with client.methods (paths the loaded protos lack).
function M.config_problems()
  local problems = {}
  for path in pairs(config().methods) do
    if path:sub(1, 1) == "/" then
      if not method_info(path) then
        problems[#problems + 1] = ("client.methods: '%s' is not a method of the loaded protos")
          :format(path)
      end
    elseif core.service_problem and core.service_problem(path) then
      problems[#problems + 1] = ("client.methods: '%s' is not a service of the loaded protos")
        :format(path)
    end
  end
  table.sort(problems)
  return problems
end

--- Metrics (go-grpc-middleware's client names; moonwire_client_* ours).
local GO_NAMES = {[0] = "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
  "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
  "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
  "Unauthenticated"}
local m_started, m_handled, m_seconds, m_attempts, m_throttled
local declared
local function declare_metrics()
  -- With metrics off (no admin listener) nothing is declared, and each
  -- call skips its label work: the m_* stay nil.
  if declared then return end
  declared = true
  if not core.metrics_on() then return end
  local base = {"grpc_type", "grpc_service", "grpc_method"}
  m_started = metrics.counter("grpc_client_started_total",
    "Outbound RPCs started.", base)
  m_handled = metrics.counter("grpc_client_handled_total",
    "Outbound RPCs completed, by status code (after retries).",
    {"grpc_type", "grpc_service", "grpc_method", "grpc_code"})
  m_seconds = metrics.histogram("grpc_client_handling_seconds",
    "Time an outbound RPC took, retries and their waits included.", base)
  m_attempts = metrics.counter("moonwire_client_attempts_total",
    "Attempts of outbound RPCs, by the status each ended with.",
    {"grpc_service", "grpc_method", "grpc_code"})
  m_throttled = metrics.counter("moonwire_client_retries_throttled_total",
    "Retries not made because the target's retry budget was spent.", {"target"})
end

-- Per path: labels, kind, idempotency, settings; made once per state.
local paths = {}
local KIND_LABEL = {unary = "unary", ["server-streaming"] = "server_stream",
                    ["client-streaming"] = "client_stream", ["bidi-streaming"] = "bidi_stream"}
local function path_info(path)
  local p = paths[path]
  if p then return p end
  if type(path) ~= "string" then
    error("bad argument #1 (a method path \"/package.Service/Method\" expected, got " ..
          type(path) .. ")", 3)
  end
  local kind, idem = method_info(path)
  if not kind then
    error(path .. ": no such method in the loaded protos (an outbound call's types come " ..
          "from the .proto files the server loads)", 3)
  end
  local svc, name = path:match "^/([^/]+)/([^/]+)$"
  local c = config()
  local ms = c.methods[path] or c.methods[svc] or {}
  if ms.idempotent ~= nil then idem = ms.idempotent end
  local t = KIND_LABEL[kind]
  p = {kind = kind, idempotent = idem, settings = ms,
       labels = {t, svc, name}, svc = svc, name = name, attempt_labels = {}, handled_labels = {}}
  paths[path] = p
  return p
end

--- Error objects: a status error with code, message, details (decoded
-- tables), trailers; raising it (mw.fail(err) or error(err)) ends the
-- handler's call with the same status and details.
local function make_error(code, message, bin, trailers)
  local err
  if bin then
    local st = status.decode(bin)
    if st then
      err = st
      err.code, err.message = code, message
    end
  end
  if not err then err = core.status(code, message) end
  err.trailers = trailers or {}
  return err
end
M.make_error = make_error

-- Retry budget per target (gRFC A6 throttling): each retryable failure
-- takes a token, each success gives back `ratio`; retries stop while the
-- bucket is at half or less.
local budgets = {}
function M.new_budget(tokens, ratio)
  return {tokens = tokens, max = tokens, ratio = ratio}
end
local function budget_of(target)
  local b = budgets[target]
  if not b then
    local c = config().budget
    b = M.new_budget(c.tokens, c.ratio)
    budgets[target] = b
  end
  return b
end
--- A retryable failure: takes a token; returns whether a retry may follow.
function M.budget_fail(b)
  b.tokens = b.tokens - 1
  if b.tokens < 0 then b.tokens = 0 end
  return b.tokens > b.max / 2
end
function M.budget_ok(b)
  b.tokens = b.tokens + b.ratio
  if b.tokens > b.max then b.tokens = b.max end
end
local budget_fail, budget_ok = M.budget_fail, M.budget_ok

local function duration_s(d)
  if type(d) == "number" then return d end
  if type(d) ~= "table" then return nil end
  return (tonumber(d.seconds) or 0) + (tonumber(d.nanos) or 0) / 1e9
end

--- How long to wait before attempt n + 1 (n attempts made), or nil when
-- the server said not to retry (a negative or bad pushback).
function M.retry_delay(policy, n, err)
  local pb = err.trailers and err.trailers["grpc-retry-pushback-ms"]
  if pb then
    local ms = tonumber(pb)
    if not ms or ms < 0 or ms ~= ms then return nil end
    return ms / 1000
  end
  for _, d in ipairs(err.details or {}) do
    if type(d) == "table" and rawget(d, "@type") == RETRY_INFO then
      local s = duration_s(d.retry_delay)
      if s and s >= 0 then return s end
    end
  end
  local cap = min(policy.initial_backoff * policy.multiplier ^ (n - 1), policy.max_backoff)
  return random() * cap -- full jitter
end

-- Policies already checked (the channel's defaults are checked once, then
-- pass through here again with every call).
local checked = setmetatable({}, {__mode = "k"})

local function check_retry(r, where)
  if r == nil then return nil end
  if checked[r] then return r end
  if r == false then return {max_attempts = 1} end
  if type(r) ~= "table" then error(where .. ": retry must be a table or false", 4) end
  local base = config().retry
  local p = {max_attempts = r.max_attempts or base.max_attempts,
             initial_backoff = r.initial_backoff or base.initial_backoff,
             max_backoff = r.max_backoff or base.max_backoff,
             multiplier = r.multiplier or base.multiplier,
             codes = base.codes}
  for k in pairs(r) do
    if k ~= "max_attempts" and k ~= "initial_backoff" and k ~= "max_backoff" and
       k ~= "multiplier" and k ~= "codes" then
      error(where .. ": unknown retry option '" .. tostring(k) .. "' (max_attempts, " ..
            "initial_backoff, max_backoff, multiplier, codes)", 4)
    end
  end
  if math.type(p.max_attempts) ~= "integer" or p.max_attempts < 1 or p.max_attempts > 10 then
    error(where .. ": retry.max_attempts must be an integer from 1 to 10", 4)
  end
  if r.codes then
    local codes = {}
    for _, c in ipairs(r.codes) do
      local n, why = status.code_of(c)
      if not n or n == 0 then error(where .. ": retry.codes: " .. (why or "OK is not an error"), 4) end
      codes[n] = true
    end
    p.codes = codes
  end
  checked[p] = true
  return p
end

local Channel = {}
Channel.__index = Channel

local CALL_OPTS = {timeout = true, metadata = true, retry = true, idempotent = true,
                   wait_for_ready = true, propagate = true}

-- metadata {k = v | {v1, v2}} -> the flat array C takes.
local function flat_md(md, where)
  if md == nil then return nil end
  if type(md) ~= "table" then error(where .. ": metadata must be a table", 4) end
  local out, n = {}, 0
  for k, v in pairs(md) do
    if type(k) ~= "string" then error(where .. ": metadata keys must be strings", 4) end
    if type(v) == "table" then
      for _, x in ipairs(v) do out[n + 1], out[n + 2] = k, tostring(x); n = n + 2 end
    else
      out[n + 1], out[n + 2] = k, tostring(v); n = n + 2
    end
  end
  return out
end

local function merged_opts(self, opts, where)
  if opts == nil then return self.defaults end
  if type(opts) ~= "table" then error(where .. ": options must be a table", 3) end
  for k in pairs(opts) do
    if not CALL_OPTS[k] then
      error(where .. ": unknown option '" .. tostring(k) .. "' (timeout, metadata, retry, " ..
            "idempotent, wait_for_ready, propagate)", 3)
    end
  end
  local d = self.defaults
  if d == nil or next(d) == nil then return opts end
  local o = {}
  for k, v in pairs(d) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  return o
end

-- The label arrays of p for a code, made once.
local function handled_labels(p, code)
  local l = p.handled_labels[code]
  if not l then
    l = {p.labels[1], p.labels[2], p.labels[3], GO_NAMES[code] or tostring(code)}
    p.handled_labels[code] = l
  end
  return l
end
local function attempt_labels(p, code)
  local l = p.attempt_labels[code]
  if not l then
    l = {p.svc, p.name, GO_NAMES[code] or tostring(code)}
    p.attempt_labels[code] = l
  end
  return l
end

-- The unary call with its retries. Returns res, or nil, err.
local function call_unary(self, path, p, req, o)
  local where = path
  local timeout = o and o.timeout or p.settings.timeout
  local deadline = deadline_of(timeout)
  local md = o and o.metadata and flat_md(o.metadata, where) or nil
  local wfr = o and o.wait_for_ready
  local inherit = not (o and o.propagate == false)
  local policy = o and o.retry ~= nil and check_retry(o.retry, where) or
                 p.settings.retry or config().retry
  local idem = p.idempotent
  if o and o.idempotent ~= nil then idem = o.idempotent end
  -- Module code at load cannot wait between attempts: one attempt there.
  local max = idem and in_handler() and policy.max_attempts or 1
  local labels = p.labels
  local t0 = m_started and now()
  if m_started then m_started:inc(labels) end
  local budget = max > 1 and budget_of(self.target) or nil
  local attempt = 1
  while true do
    local res, code, message, bin, trailers =
      unary(self.ch, path, req, deadline, md, wfr, attempt, inherit)
    if m_attempts then m_attempts:inc(attempt_labels(p, code or 0)) end
    if res ~= nil then
      if budget then budget_ok(budget) end
      if m_handled then
        m_handled:inc(handled_labels(p, 0))
        m_seconds:observe(now() - t0, labels)
      end
      return res
    end
    local err = make_error(code, message, bin, trailers)
    -- Every retryable failure spends budget (gRFC A6), the last one too;
    -- a retry happens only with attempts, budget and time left.
    local retryable = policy.codes[code] and max > 1
    if retryable and not budget_fail(budget) then
      retryable = false
      if attempt < max and m_throttled then m_throttled:inc({self.target}) end
    end
    local delay = retryable and attempt < max and M.retry_delay(policy, attempt, err)
    if delay and deadline and wall() + delay >= deadline then delay = nil end
    if not delay then
      err.attempts = attempt
      if m_handled then
        m_handled:inc(handled_labels(p, code))
        m_seconds:observe(now() - t0, labels)
      end
      return nil, err
    end
    if delay > 0 then sleep(delay) end
    attempt = attempt + 1
  end
end

--- A client-side stream over the C one: recv gives messages, nil at the
-- end, or nil, err.
local Stream = {}
Stream.__index = Stream

function Stream:send(msg) return self.s:send(msg) end
function Stream:close_send() return self.s:close_send() end
function Stream:cancel() return self.s:cancel() end
function Stream:headers() return self.s:headers() end
function Stream:recv()
  local msg, code, message, bin, trailers = self.s:recv()
  if msg ~= nil then return msg end
  if code == nil then
    self:_done(0)
    return nil
  end
  self:_done(code)
  return nil, make_error(code, message, bin, trailers)
end
function Stream:_done(code)
  if self.finished then return end
  self.finished = true
  if m_handled then
    m_handled:inc(handled_labels(self.p, code))
    m_seconds:observe(now() - self.t0, self.p.labels)
  end
end
--- s:relay(stream): for a proxy, the next message of either side of a
-- client- or bidi-streaming handler: "in", request (nil: the client
-- half-closed) from the handler's stream, or "out", reply from s; at s's
-- end "out", nil, err (nil when it ended OK), trailers. Whichever side is
-- not returned keeps its message for the next call.
function Stream:relay(stream)
  while true do
    local side, msg, code, message, bin, trailers = relay(self.s, stream)
    if side == "in" or (side == "out" and msg ~= nil) then return side, msg end
    if side == "out" then
      self:_done(code)
      if code == 0 then return "out", nil, nil, trailers end
      return "out", nil, make_error(code, message, bin, trailers), trailers
    end
  end
end

--- for msg in s:iter() do ... end: raises the error of a stream that fails,
-- so that an unhandled failure ends the handler's call with its status.
function Stream:iter()
  return function()
    local msg, err = self:recv()
    if err then error(err, 0) end
    return msg
  end
end

local function open_stream(self, path, p, req, o, where)
  local timeout = o and o.timeout or p.settings.timeout
  local deadline = deadline_of(timeout)
  local md = o and o.metadata and flat_md(o.metadata, where) or nil
  local inherit = not (o and o.propagate == false)
  if m_started then m_started:inc(p.labels) end
  local s, code, message, bin, trailers =
    open(self.ch, path, deadline, md, o and o.wait_for_ready, 1, inherit)
  if not s then return nil, make_error(code, message, bin, trailers) end
  local st = setmetatable({s = s, p = p, t0 = now()}, Stream)
  if p.kind == "server-streaming" then
    if type(req) ~= "table" then
      s:cancel()
      error(path .. " is server-streaming: its request message is required", 3)
    end
    s:send(req)
  elseif req ~= nil then
    s:send(req)
  end
  return st
end

--- ch:call(path, req, opts): a unary call -> res, or nil, err; a streaming
-- method -> a stream (req, when given, sent first; required for
-- server-streaming), or nil, err.
function Channel:call(path, req, opts)
  local p = path_info(path)
  local o = merged_opts(self, opts, path)
  if p.kind ~= "unary" then return open_stream(self, path, p, req, o, path) end
  if type(req) ~= "table" then
    error("bad argument #2 to 'call' (a request table expected, got " .. type(req) .. ")", 2)
  end
  return call_unary(self, path, p, req, o)
end

--- ch:stream(path, opts): opens a client- or bidi-streaming call.
function Channel:stream(path, opts)
  local p = path_info(path)
  if p.kind == "unary" then error(path .. " is unary: use call()", 2) end
  return open_stream(self, path, p, nil, merged_opts(self, opts, path), path)
end

--- ch:start(path, req, opts): a unary call left in flight -> a future with
-- wait() (res, or nil, err) and cancel(). One attempt: no retries.
local Future = {}
Future.__index = Future
function Future:wait()
  local res, code, message, bin, trailers = self.f:wait()
  if not self.counted and m_handled then
    -- Counted once, at the first wait that sees the outcome.
    self.counted = true
    local c = res ~= nil and 0 or code
    m_attempts:inc(attempt_labels(self.p, c))
    m_handled:inc(handled_labels(self.p, c))
    m_seconds:observe(now() - self.t0, self.p.labels)
  end
  if res ~= nil then return res end
  return nil, make_error(code, message, bin, trailers)
end
function Future:cancel() return self.f:cancel() end

function Channel:start(path, req, opts)
  local p = path_info(path)
  if p.kind ~= "unary" then error(path .. " is " .. p.kind .. ": use call() or stream()", 2) end
  if type(req) ~= "table" then
    error("bad argument #2 to 'start' (a request table expected, got " .. type(req) .. ")", 2)
  end
  local o = merged_opts(self, opts, path)
  local timeout = o and o.timeout or p.settings.timeout
  if m_started then m_started:inc(p.labels) end
  local f, code, message, bin, trailers =
    start(self.ch, path, req, deadline_of(timeout), o and o.metadata and flat_md(o.metadata, path),
          o and o.wait_for_ready, 1, not (o and o.propagate == false))
  if not f then
    f = {wait = function() return nil, code, message, bin, trailers end, cancel = function() end}
  end
  return setmetatable({f = f, p = p, t0 = m_started and now()}, Future)
end

--- ch:service "pkg.Service": a table whose fields call its methods:
-- Svc.Method(req, opts) as ch:call.
function Channel:service(name)
  if type(name) ~= "string" then error("bad argument #1 to 'service' (string expected)", 2) end
  local svc = self.services[name]
  if svc then return svc end
  local ch = self
  svc = setmetatable({}, {__index = function(t, method)
    local path = "/" .. name .. "/" .. tostring(method)
    if not method_info(path) then
      error(path .. ": no such method in the loaded protos", 2)
    end
    local fn = function(req, opts) return ch:call(path, req, opts) end
    rawset(t, method, fn)
    return fn
  end})
  self.services[name] = svc
  return svc
end

function Channel:__tostring() return "moonwire.client(" .. self.target .. ")" end

-- Channels by target and options, per state: equal ones are one object,
-- and one connection per worker (core caches those).
local channels = {}

local function script_dir(level)
  local info = getinfo(level, "S")
  local src = info and info.source
  if type(src) == "string" and src:sub(1, 1) == "@" then
    return src:sub(2):match "^(.*)/[^/]*$"
  end
  return nil
end

local function resolve(path, dir)
  if type(path) ~= "string" then return path end
  if path:sub(1, 1) == "/" or not dir then return path end
  return dir .. "/" .. path
end

local CH_OPTS = {tls = true, timeout = true, metadata = true, retry = true,
                 wait_for_ready = true, idempotent = true, propagate = true}

--- mw.client(target, opts): target "host:port", "[v6]:port" or
-- "unix:path", which client.allow must list. opts.tls: true (the system's
-- roots) or {ca =, cert =, key =, server_name =} (files beside the calling
-- script unless absolute); the other options are call defaults.
function M.new(target, opts)
  if type(target) ~= "string" then
    error("bad argument #1 to 'client' (a target string expected, got " .. type(target) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'client' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not CH_OPTS[k] then
      error("mw.client: unknown option '" .. tostring(k) .. "' (tls, timeout, metadata, " ..
            "retry, wait_for_ready, idempotent, propagate)", 2)
    end
  end
  local tls = opts.tls
  local key = target
  if tls ~= nil and tls ~= false then
    if tls ~= true and type(tls) ~= "table" then error("mw.client: tls must be true or a table", 2) end
    if type(tls) == "table" then
      local dir = script_dir(3)
      local t = {}
      for k, v in pairs(tls) do
        if k ~= "ca" and k ~= "cert" and k ~= "key" and k ~= "server_name" then
          error("mw.client: unknown tls option '" .. tostring(k) .. "' (ca, cert, key, server_name)", 2)
        end
        t[k] = (k == "server_name") and v or resolve(v, dir)
      end
      tls = t
      key = key .. "|tls|" .. tostring(t.ca) .. "|" .. tostring(t.cert) .. "|" ..
            tostring(t.key) .. "|" .. tostring(t.server_name)
    else
      key = key .. "|tls"
    end
  else
    tls = nil
  end
  local defaults = {}
  for k, v in pairs(opts) do if k ~= "tls" then defaults[k] = v end end
  if defaults.retry ~= nil then defaults.retry = check_retry(defaults.retry, "mw.client") end
  local nodefaults = next(defaults) == nil
  if nodefaults then
    local c = channels[key]
    if c then return c end
  end
  local ok, ch = pcall(core.client_channel, target, tls)
  if not ok then error(ch, 2) end
  declare_metrics()
  local c = setmetatable({target = target, ch = ch, services = {},
                          defaults = not nodefaults and defaults or nil}, Channel)
  if nodefaults then channels[key] = c end
  return c
end

return M
