--- moonwire.interceptors.rate_limit: a token bucket per caller.
--
--   interceptors:
--     - rate_limit: {rate: 10, burst: 20, key: "metadata:x-api-key"}
--
-- Each call takes one token from the bucket of its key; the bucket refills
-- at `rate` tokens per second up to `burst` (default: rate, at least 1).
-- An empty bucket fails the call with RESOURCE_EXHAUSTED and a RetryInfo
-- saying when a token will be there. Keys:
--   peer               the client's address without its port
--   metadata:NAME      a request metadata value (calls without it share
--                      one bucket)
--   identity           the caller the auth interceptor found (JWT sub or
--                      the certificate's SPIFFE ID / common name), which
--                      must run first; calls without one share one bucket
--   global             one bucket for every call
-- per_method: true gives every method its own buckets.
--
-- The buckets are the process's (base/mw_ratelimit.h, through
-- core.rate_take): every worker takes from the same ones, so a client gets
-- `rate` however its calls spread over the workers. The table is bounded
-- (32768 buckets); the keys touched least recently give way first.
local mw = require "moonwire"
local core = require "moonwire.core"

local type, pairs, tostring, error, floor = type, pairs, tostring, error, math.floor
local take = core.rate_take

local check_options = require("moonwire.intercept").check_options

local M = {}

-- "ipv4:127.0.0.1:53412" -> "ipv4:127.0.0.1", "ipv6:[::1]:80" -> "ipv6:[::1]"
local function peer_address(p)
  if type(p) ~= "string" then return "" end
  return p:match "^(.*):%d+$" or p
end

function M.new(opts, env)
  opts = opts or {}
  env = env or {}
  check_options(opts, {"rate", "burst", "key", "per_method", "name"})
  local rate = opts.rate
  if type(rate) ~= "number" or rate <= 0 then error("rate must be a number of calls per second > 0", 0) end
  local burst = opts.burst
  if burst == nil then burst = rate < 1 and 1 or rate end
  if type(burst) ~= "number" or burst < 1 then error("burst must be a number >= 1", 0) end
  local spec = opts.key or "peer"
  if type(spec) ~= "string" then error("key must be a string", 0) end
  local keyof
  if spec == "peer" then
    keyof = function(ctx) return peer_address(ctx.peer) end
  elseif spec == "global" then
    keyof = function() return "" end
  elseif spec == "identity" then
    keyof = function(ctx)
      local id = ctx.values.identity
      return id and tostring(id.subject or id.common_name or "") or ""
    end
  elseif spec:match "^metadata:" then
    local name = spec:sub(10):lower()
    if not name:match "^[%w%-_%.]+$" then error("key: bad metadata name '" .. name .. "'", 0) end
    keyof = function(ctx) return ctx.metadata[name] or "" end
  else
    error(("key must be peer, global, identity or metadata:NAME, not '%s'"):format(spec), 0)
  end
  local per_method = opts.per_method == true
  -- The buckets' names: the same in every worker and across reloads (so a
  -- reload keeps the counts), different for limiters that differ.
  local prefix = ("rl\0%s\0%s\0%s\0%.17g\0%.17g\0"):format(
    tostring(opts.name or ""), tostring(env.level or ""), tostring(env.method or env.service or ""),
    rate, burst) .. spec .. "\0"

  return {
    name = "rate_limit",
    call = function(req, ctx, next)
      local key = prefix .. (per_method and ctx.method .. "\0" or "") .. keyof(ctx)
      local ok, retry = take(key, rate, burst)
      if not ok then
        local s = floor(retry)
        local nanos = floor((retry - s) * 1e9)
        if nanos >= 1000000000 then s, nanos = s + 1, 0 end
        mw.fail(mw.RESOURCE_EXHAUSTED, ("rate limit exceeded: retry in %.3fs"):format(retry),
                {mw.details.RetryInfo({retry_delay = {seconds = s, nanos = nanos}})})
      end
      return next(req, ctx)
    end,
  }
end

return M
