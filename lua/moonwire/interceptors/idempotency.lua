--- moonwire.interceptors.idempotency: a unary call carrying an idempotency
-- key runs once; a retry with the same key and the same request gets the
-- first call's reply, without running the handler again.
--
--   methods:
--     "/shop.Payments/Charge": {idempotency: {key: metadata, ttl: 24h}}
--
-- or in Lua: mw.intercept("/shop.Payments/Charge", mw.interceptors.idempotency{
--   key = {field = "request_id"}})
--
-- Options:
--   key         metadata (default: the `idempotency-key` header),
--               {metadata = NAME}, or {field = NAME} (a string or integer
--               field of the request, e.g. request_id)
--   ttl         how long a reply is kept: seconds or a duration ("24h",
--               the default)
--   concurrent  wait (default): a duplicate arriving while the first call
--               runs waits for it (up to its own deadline, then
--               DEADLINE_EXCEEDED); abort: ABORTED at once
--   required    true: a call without a key fails with INVALID_ARGUMENT;
--               false (default): it just runs
--   store       where keys are kept: process (default; the process-wide
--               table), {shared = NAME} (a shared dict: on Redis, keys are
--               shared by every instance; optional lease, how long a
--               running claim holds its key, default 60s), or (Lua only) a
--               store object, see below
--
-- What a call gets: the first call with a key runs. Its status, message,
-- details, response, and the headers and trailers set inside this
-- interceptor are kept for `ttl` with the request's fingerprint (SHA-256 of
-- the method and the request encoded deterministically). A duplicate with
-- the same fingerprint gets them again, with the header
-- `idempotent-replayed: true`; the same key with another request is
-- INVALID_ARGUMENT; a key over 255 bytes is INVALID_ARGUMENT. Keys are
-- scoped by method, and by the caller when an auth interceptor before this
-- one set ctx.values.identity (one caller's key is never another's reply).
--
-- Not kept (the claim is released, so a retry runs again): INVALID_ARGUMENT
-- (validation), CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE,
-- RESOURCE_EXHAUSTED, and a handler stopped by its CPU budget or for want
-- of memory. Every other outcome is kept: OK and the other errors alike
-- (FAILED_PRECONDITION, INTERNAL...), as Stripe does. A Lua error (not a
-- status) is kept as INTERNAL "internal error in the handler".
--
-- The store is an object of four functions (the process-wide table in C by
-- default, base/mw_idem.h, through core.idem_*); another backing (shared
-- dicts, Redis) replaces it without changing this interceptor:
--   claim(scope, key, fp, ctx) -> "new", token | "done", reply or nil (ran,
--                             its reply not kept) | "running", version |
--                             "mismatch" | "full" (ctx: the call's, for its
--                             deadline)
--   complete(scope, key, token, reply, ttl) -> "stored" | "unkept" | "stale"
--   release(scope, key, token)
--   wait(version, n)       in a handler: returns once a claim may have
--                          ended after `version` (raises when the call is
--                          cancelled or its deadline passes); n: how many
--                          times this call waited before (for a backoff)
-- claim may also answer "unavailable", message: the store cannot be
-- reached (Redis down): the call fails UNAVAILABLE and is not run.
local mw = require "moonwire"
local core = require "moonwire.core"

local type, pairs, tostring, error, pcall, math_type = type, pairs, tostring, error, pcall,
  math.type
local pack, unpack = string.pack, string.unpack
local is_status = mw.is_status
local response_counts = core.ctx_response_counts

local check_options = require("moonwire.intercept").check_options

local M = {}

M.HEADER = "idempotency-key"
M.REPLAYED = "idempotent-replayed"
M.MAX_KEY = 255
M.DEFAULT_TTL = 24 * 3600

-- The outcomes not kept: what a retry is expected to run again.
M.NOT_KEPT = {
  [mw.INVALID_ARGUMENT] = true, [mw.CANCELLED] = true, [mw.DEADLINE_EXCEEDED] = true,
  [mw.UNAVAILABLE] = true, [mw.RESOURCE_EXHAUSTED] = true,
}
local NOT_KEPT = M.NOT_KEPT

--- The process-wide store (base/mw_idem.h): shared by every worker,
-- bounded (64 MiB), kept across reloads.
M.process_store = {
  claim = core.idem_claim,
  complete = core.idem_complete,
  release = core.idem_release,
  wait = core.idem_wait,
}

local outcomes = mw.metrics.counter("moonwire_idempotency_total",
  "Calls with an idempotency key, by what became of them.", {"method", "outcome"})

-- The reply kept for a duplicate: status, message, details
-- (grpc-status-details-bin, or ""), the response (or ""), then the headers
-- and trailers as counted pairs. Opaque to the store.
local FORMAT = 1

local function pack_md(parts, list, from)
  local n = #list - from
  parts[#parts + 1] = pack("<I4", n)
  for i = from + 1, #list do parts[#parts + 1] = pack("<s4s4", list[i][1], list[i][2]) end
end

local function pack_reply(code, message, details, body, headers, h0, trailers, t0)
  if #headers == h0 and #trailers == t0 then -- the common case, in one piece
    return pack("<I1i4s4s4s4I4I4", FORMAT, code, message, details, body, 0, 0)
  end
  local parts = {pack("<I1i4s4s4s4", FORMAT, code, message, details, body)}
  pack_md(parts, headers, h0)
  pack_md(parts, trailers, t0)
  return table.concat(parts)
end

local NONE = {}

local function unpack_md(blob, pos)
  local n
  n, pos = unpack("<I4", blob, pos)
  local list = {}
  for i = 1, n do
    local k, v
    k, v, pos = unpack("<s4s4", blob, pos)
    list[i] = {k, v}
  end
  return list, pos
end

local function unpack_reply(blob)
  local format, code, message, details, body, pos = unpack("<I1i4s4s4s4", blob)
  if format ~= FORMAT then error("idempotency: a stored reply of an unknown format", 0) end
  local headers, trailers
  headers, pos = unpack_md(blob, pos)
  trailers = unpack_md(blob, pos)
  return code, message, details, body, headers, trailers
end

M.pack_reply, M.unpack_reply = pack_reply, unpack_reply

-- key option -> function(req, ctx) giving the key (nil when absent), and
-- what a client is told when it is missing.
local function key_getter(spec, input)
  if spec == nil or spec == "metadata" then spec = {metadata = M.HEADER} end
  if type(spec) ~= "table" then
    error("key must be metadata, {metadata = NAME} or {field = NAME}, not '" .. tostring(spec) .. "'", 0)
  end
  for k in pairs(spec) do
    if k ~= "metadata" and k ~= "field" then
      error(("key: unknown option '%s' (metadata or field)"):format(tostring(k)), 0)
    end
  end
  if spec.metadata ~= nil and spec.field ~= nil then
    error("key: give metadata or field, not both", 0)
  end
  if spec.metadata ~= nil then
    local name = spec.metadata
    if type(name) ~= "string" or not name:lower():match "^[%w%-_%.]+$" or name:lower():match "%-bin$" then
      error(("key: bad metadata name '%s'"):format(tostring(name)), 0)
    end
    name = name:lower()
    local first = core.ctx_metadata_first
    return function(_, ctx) return first(ctx, name) end, ("the '%s' metadata"):format(name)
  end
  local field = spec.field
  if type(field) ~= "string" or not field:match "^[%a_][%w_]*$" then
    error(("key: field must name a field of the request, not '%s'"):format(tostring(field)), 0)
  end
  if input then
    local ft = core.idem_field(input, field)
    if not ft then error(("key: %s has no field '%s'"):format(input, field), 0) end
    if ft ~= "string" and ft ~= "int32" and ft ~= "int64" and ft ~= "uint32" and ft ~= "uint64" then
      error(("key: field '%s' of %s is %s; a key field is a string or an integer"):format(
        field, input, ft), 0)
    end
  end
  return function(req)
    local v = req[field]
    if math_type(v) == "integer" then
      if v == 0 then return nil end -- proto3's unset integer
      return tostring(v)
    end
    if type(v) == "string" then return v end
    return nil
  end, ("the request field '%s'"):format(field)
end

--- A store over a shared dict (mw.shared.NAME), on either backend: on
-- Redis the keys are shared by every instance using it. One dict entry per
-- key: "R" .. fingerprint .. token while the first call runs (made by
-- `safe_add`, Redis's SET NX PX: the atomic claim, held until the call's
-- deadline, or for a lease when it has none, so that a crashed instance
-- cannot hold a key forever), then "D" .. fingerprint ..
-- reply until ttl (flags 1: the reply could not be kept). A duplicate
-- waiting for a running call polls (5 ms, doubling to 50 ms, until its own
-- deadline): see docs/lua-api.md for why not pub/sub.
local POLL_MIN, POLL_MAX = 0.005, 0.05
local FP_LEN = 32

function M.dict_store(d, opts)
  opts = opts or {}
  check_options(opts, {"shared", "lease"})
  local lease = 60
  if opts.lease ~= nil then
    local ok, sec = pcall(mw.duration, opts.lease)
    if not ok or sec <= 0 then
      error(("store.lease must be a positive duration (like 60s), not '%s'"):format(tostring(opts.lease)), 0)
    end
    lease = sec
  end
  local sub = string.sub
  local function entry(scope, key) return "idem\0" .. scope .. "\0" .. key end
  local function running_marker(v, token)
    return type(v) == "string" and sub(v, 1, 1) == "R" and sub(v, 2 + FP_LEN) == token
  end
  local store = {}
  function store.claim(scope, key, fp, ctx)
    local k = entry(scope, key)
    -- A call cannot run past its deadline (it is stopped there): its claim
    -- holds the key that long, and a second more, whatever the lease.
    local hold = lease
    local left = ctx and ctx.remaining and ctx:remaining()
    if left and left < math.huge then hold = left + 1 end
    for _ = 1, 3 do -- an entry that expires between add and get: again
      local token = string.format("%x%x", math.random(0, 1 << 62), math.random(0, 1 << 62))
      -- safe_: a store in memory never evicts other keys (running claims
      -- among them) to make room; a full one refuses the call instead
      local ok, err = d:safe_add(k, "R" .. fp .. token, hold)
      if ok then return "new", token end
      if err ~= "exists" then
        if err == "no memory" then return "full" end
        return "unavailable", err
      end
      local v, flags = d:get(k)
      if type(v) == "string" then
        if sub(v, 2, 1 + FP_LEN) ~= fp then return "mismatch" end
        if sub(v, 1, 1) == "R" then return "running", nil end
        if flags == 1 then return "done", nil end
        return "done", sub(v, 2 + FP_LEN)
      elseif v ~= nil then
        return "unavailable", "the idempotency entry is not a string"
      elseif flags ~= nil then -- nil, err: the store failed
        return "unavailable", flags
      end
    end
    return "unavailable", "the idempotency entry keeps changing"
  end
  -- Only the claim's owner ends it, and only while its marker is there
  -- (a lease that ran out may have let another call claim the key).
  function store.complete(scope, key, token, reply, ttl)
    local k = entry(scope, key)
    local v = d:get(k)
    if not running_marker(v, token) then return "stale" end
    local fp = sub(v, 2, 1 + FP_LEN)
    local ok, err = d:safe_set(k, "D" .. fp .. reply, ttl)
    if ok then return "stored" end
    if err == "no memory" then
      d:safe_set(k, "D" .. fp, ttl, 1) -- smaller than the claim it replaces
      return "unkept"
    end
    return "stale"
  end
  function store.release(scope, key, token)
    local k = entry(scope, key)
    if running_marker(d:get(k), token) then d:delete(k) end
  end
  -- The interceptor claims again after each wait; n counts the waits.
  function store.wait(_, n)
    mw.sleep(math.min(POLL_MIN * 2 ^ (n or 0), POLL_MAX))
  end
  return store
end

local function check_store(s)
  if s == nil or s == "process" then return M.process_store end
  if type(s) == "table" and s.shared ~= nil then
    if type(s.shared) ~= "string" then error("store.shared must name a shared dict", 0) end
    return M.dict_store(mw.shared[s.shared], s)
  end
  if type(s) ~= "table" then error("store must be process, {shared = NAME}, or a table of claim, complete, release and wait", 0) end
  for _, f in pairs {"claim", "complete", "release", "wait"} do
    if type(s[f]) ~= "function" then error(("store: %s must be a function"):format(f), 0) end
  end
  return s
end

function M.new(opts, env)
  opts = opts or {}
  env = env or {}
  check_options(opts, {"key", "ttl", "concurrent", "required", "store"})
  local ttl = M.DEFAULT_TTL
  if opts.ttl ~= nil then
    local ok, s = pcall(mw.duration, opts.ttl)
    if not ok or s <= 0 then
      error(("ttl must be a positive duration (like 24h or 300ms), not '%s'"):format(tostring(opts.ttl)), 0)
    end
    ttl = s
  end
  local concurrent = opts.concurrent or "wait"
  if concurrent ~= "wait" and concurrent ~= "abort" then
    error(("concurrent must be wait or abort, not '%s'"):format(tostring(concurrent)), 0)
  end
  local abort = concurrent == "abort"
  local required = opts.required
  if required ~= nil and type(required) ~= "boolean" then error("required must be true or false", 0) end
  local store = check_store(opts.store)

  -- One method named: it must be unary, and a key field must be its request's.
  local input
  if env.level == "method" and env.method then
    local kind, i = core.idem_method(env.method)
    if kind and kind ~= "unary" then
      error(("idempotency applies to unary methods only; %s is %s"):format(
        env.method, (kind:gsub("_", "-"))), 0)
    end
    input = i
  end
  local keyof, where = key_getter(opts.key, input)
  -- At a method's level the path is known: ctx.method is not read per call.
  local own_path = env.level == "method" and env.method or nil
  local peek_values = core.ctx_values_peek
  local claim, complete, release, wait = store.claim, store.complete, store.release, store.wait

  -- Per method path (one interceptor may serve a whole service): its kind,
  -- its message types and its counters' labels. core.idem_method is looked
  -- up at each miss, so that a spec can stand in for the schema.
  local methods = {}
  local function method_of(path)
    local m = methods[path]
    if m then return m end
    local kind, i, o = core.idem_method(path)
    m = {unary = kind == "unary", input = i, output = o, labels = {},
         maps = kind == "unary" and core.idem_maps(i)}
    methods[path] = m
    return m
  end
  local function count(m, path, outcome)
    local l = m.labels[outcome]
    if not l then
      l = {path, outcome}
      m.labels[outcome] = l
    end
    outcomes:inc(l)
  end

  local function replay(m, path, reply, ctx)
    count(m, path, "replayed")
    if reply == nil then
      mw.fail(mw.ALREADY_EXISTS, "a call with this idempotency key has run; its reply was too large to keep")
    end
    -- (unpack_reply, without building the lists)
    local format, code, message, details, body, pos = unpack("<I1i4s4s4s4", reply)
    if format ~= FORMAT then error("idempotency: a stored reply of an unknown format", 0) end
    local n, k, v
    n, pos = unpack("<I4", reply, pos)
    for _ = 1, n do
      k, v, pos = unpack("<s4s4", reply, pos)
      ctx:set_header(k, v)
    end
    ctx:set_header(M.REPLAYED, "true")
    n, pos = unpack("<I4", reply, pos)
    for _ = 1, n do
      k, v, pos = unpack("<s4s4", reply, pos)
      ctx:set_trailer(k, v)
    end
    if code == mw.OK then
      local res, err = core.idem_decode(m.output, body)
      if not res then error("idempotency: cannot decode the stored response: " .. err, 0) end
      return res
    end
    if details ~= "" then
      local st = mw.decode_status(details)
      if st then error(st, 0) end
    end
    error(mw.status(code, message), 0)
  end

  -- The first call: runs the rest of the chain, then keeps what it gave or
  -- lets the key go. A handler stopped for its budget or deadline raises
  -- again at the first instruction after next(), so nothing here runs
  -- then: the on_done function lets the key go instead.
  local function run(m, path, scope, key, token, req, ctx, next)
    local ended = false
    ctx:on_done(function()
      if not ended then release(scope, key, token) end
    end)
    local h0, t0 = response_counts(ctx)
    local ok, res = pcall(next, req, ctx)
    local code, message, details, body
    if ok then
      local bytes, err
      if type(res) == "table" then bytes, err = core.idem_encode(m.output, res) end
      if bytes then
        code, message, details, body = mw.OK, "", "", bytes
      else
        -- The runtime fails the call with INTERNAL, and so will a replay.
        code, message, details, body = mw.INTERNAL,
          err and ("invalid response: " .. err) or "the handler returned no response", "", ""
      end
    elseif is_status(res) then
      if res.cancelled or NOT_KEPT[res.code] then
        ended = true
        release(scope, key, token)
        count(m, path, "not_kept")
        error(res, 0)
      end
      code, message, details, body = res.code, res.message or "", "", ""
      if res.details and res.details[1] ~= nil then details = mw.encode_status(res) or "" end
    elseif res == "not enough memory" then
      ended = true
      release(scope, key, token)
      count(m, path, "not_kept")
      error(res, 0)
    else
      code, message, details, body = mw.INTERNAL, "internal error in the handler", "", ""
    end
    local headers, trailers = NONE, NONE
    local h1, t1 = response_counts(ctx)
    if h1 ~= h0 or t1 ~= t0 then headers, trailers = ctx:response_metadata() end
    if headers == NONE then h0, t0 = 0, 0 end
    complete(scope, key, token, pack_reply(code, message, details, body, headers, h0, trailers, t0), ttl)
    ended = true
    count(m, path, "executed")
    if ok then return res end
    error(res, 0)
  end

  return {
    name = "idempotency",
    call = function(req, ctx, next)
      local path = own_path or ctx.method
      local m = method_of(path)
      -- A service's or everyone's interceptor leaves streaming methods be.
      if not m.unary then return next(req, ctx) end
      local key = keyof(req, ctx)
      if key == nil or key == "" then
        if required then
          count(m, path, "rejected")
          mw.fail(mw.INVALID_ARGUMENT, ("%s needs an idempotency key (%s)"):format(path, where))
        end
        return next(req, ctx)
      end
      if #key > M.MAX_KEY then
        count(m, path, "rejected")
        mw.fail(mw.INVALID_ARGUMENT, ("the idempotency key is longer than %d bytes"):format(M.MAX_KEY))
      end
      local scope = path
      local values = peek_values(ctx)
      local id = values and values.identity
      if type(id) == "table" and id.subject ~= nil then scope = path .. "\0" .. tostring(id.subject) end
      local fp, err = core.idem_fingerprint(m.input, path, req, m.maps)
      if not fp then mw.fail(mw.INTERNAL, "idempotency: cannot encode the request: " .. err) end
      local waited = 0
      while true do
        local state, v = claim(scope, key, fp, ctx)
        if state == "new" then return run(m, path, scope, key, v, req, ctx, next) end
        if state == "done" then return replay(m, path, v, ctx) end
        if state == "mismatch" then
          count(m, path, "mismatch")
          mw.fail(mw.INVALID_ARGUMENT,
            "the idempotency key was already used with a different request to " .. path)
        end
        if state == "full" then
          count(m, path, "full")
          mw.fail(mw.RESOURCE_EXHAUSTED, "the idempotency store is full; retry later")
        end
        if state == "unavailable" then
          count(m, path, "unavailable")
          mw.fail(mw.UNAVAILABLE, "the idempotency store is unavailable: " .. tostring(v))
        end
        -- running
        if abort then
          count(m, path, "aborted")
          mw.fail(mw.ABORTED, "a call with this idempotency key is in progress")
        end
        if waited == 0 then count(m, path, "waited") end
        wait(v, waited)
        waited = waited + 1
      end
    end,
  }
end

return M
