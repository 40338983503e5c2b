--- moonwire.interceptors.trace: a SERVER span per call, following the
-- OpenTelemetry semantic conventions for RPC, v1.37.0 (docs/rpc/grpc.md),
-- with the W3C trace context of the request's traceparent/tracestate.
-- Installed automatically as the outermost global interceptor when
-- `tracing:` is configured; the spans go to the OTLP exporter (C).
--
-- ctx.trace = {trace_id, span_id, parent_span_id, sampled, traceparent,
-- tracestate} plus t:set(key, value) and t:event(name, attrs) on the span.
-- An unsampled call gets its ids and records nothing.
local core = require "moonwire.core"

local type, tostring, error, pcall, setmetatable = type, tostring, error, pcall, setmetatable
local trace_start, export = core.trace_start, core.trace_export
local now = core.now

local check_options = require("moonwire.intercept").check_options

local M = {}

-- Server spans are errors only for these codes (v1.37 rpc/grpc.md): the
-- others are the client's doing.
local ERROR = {[2] = true, [4] = true, [12] = true, [13] = true, [14] = true, [15] = true}

local SPAN = {} -- the private key of the span record inside ctx.trace
-- ctx -> span record of sampled streaming calls, for recv/send: cheaper than
-- ctx.trace's __index on every message of every call.
local streaming = setmetatable({}, {__mode = "k"})

local methods = {}
methods.__index = methods

--- t:set(key, value): an attribute on the span (string, integer, float or
-- boolean value). Nothing on an unsampled call.
function methods:set(key, value)
  if type(key) ~= "string" then
    error("bad argument #1 to 'set' (string expected, got " .. type(key) .. ")", 2)
  end
  local tv = type(value)
  if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
    error("bad argument #2 to 'set' (string, number or boolean expected, got " .. tv .. ")", 2)
  end
  local sp = self[SPAN]
  if sp then sp.attributes[key] = value end
end

--- t:event(name, attrs): a timed event on the span.
function methods:event(name, attrs)
  if type(name) ~= "string" then
    error("bad argument #1 to 'event' (string expected, got " .. type(name) .. ")", 2)
  end
  if attrs ~= nil and type(attrs) ~= "table" then
    error("bad argument #2 to 'event' (table expected, got " .. type(attrs) .. ")", 2)
  end
  local sp = self[SPAN]
  if sp then
    local ev = sp.events
    ev[#ev + 1] = {name = name, time = now(), attributes = attrs}
  end
end

-- "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555" -> address, port
local function peer_of(peer)
  if type(peer) ~= "string" then return nil end
  local a, p = peer:match "^ipv6:%[(.*)%]:(%d+)$"
  if not a then a, p = peer:match "^ipv4:([^:]+):(%d+)$" end
  if a then return a, math.tointeger(tonumber(p)) end
  return peer:match "^unix:(.*)$" or peer, nil
end

-- The ctx.trace of a new call (and its span record when sampled); the
-- header work is C's (core.trace_start), since every call pays it.
function M.start(ctx, ratio)
  local t = trace_start(ctx, ratio, methods)
  local sampled, trace_id, span_id, parent = t.sampled, t.trace_id, t.span_id, t.parent_span_id
  if sampled then
    local service, name = ctx.service, ctx.method_name
    local address, port = peer_of(ctx.peer)
    local kind = ctx.kind
    t[SPAN] = {
      trace_id = trace_id, span_id = span_id, parent_span_id = parent,
      name = service .. "/" .. name, start = now(),
      attributes = {
        ["rpc.system"] = "grpc", ["rpc.service"] = service, ["rpc.method"] = name,
        ["network.peer.address"] = address, ["network.peer.port"] = port,
        -- no server.address/port: gRPC core's registered calls do not hand
        -- over :authority
      },
      events = {},
      ev_in = kind == "client_stream" or kind == "bidi_stream",
      ev_out = kind == "server_stream" or kind == "bidi_stream",
      n_in = 0, n_out = 0, bytes_in = 0,
    }
  end
  return t
end

--- The span's end: status code, span status, export. Returns the JSON.
function M.finish(t, code, message)
  local sp = t[SPAN]
  if not sp or sp.finish then return nil end
  sp.finish = now()
  sp.attributes["rpc.grpc.status_code"] = code
  if ERROR[code] then
    sp.status = 2
    sp.message = message
  else
    sp.status = 0
  end
  return export(sp)
end

local function message_event(ctx, kind, dir)
  local sp = streaming[ctx]
  if not sp or not sp[dir] then return end
  local n
  if kind == "SENT" then n = sp.n_out + 1; sp.n_out = n else n = sp.n_in + 1; sp.n_in = n end
  local attrs = {["rpc.message.type"] = kind, ["rpc.message.id"] = n}
  if kind == "RECEIVED" and ctx.io then
    -- A received message is counted by now (as decoded: its uncompressed
    -- size); a sent one is not encoded yet, so its size is unknown here.
    local b = ctx:io().bytes_in
    attrs["rpc.message.uncompressed_size"] = b - sp.bytes_in
    sp.bytes_in = b
  end
  local ev = sp.events
  ev[#ev + 1] = {name = "rpc.message", time = now(), attributes = attrs}
end

--- new(opts, env): opts.sample, the ratio of new traces sampled (0..1,
-- default 1).
function M.new(opts, env)
  opts = opts or {}
  check_options(opts, {"sample"})
  local ratio = opts.sample == nil and 1.0 or opts.sample
  if type(ratio) ~= "number" or ratio < 0 or ratio > 1 then
    error("sample must be a number from 0.0 to 1.0, not " .. tostring(ratio), 0)
  end
  local start, finish = M.start, M.finish
  return {
    name = "trace",
    call = function(req, ctx, next)
      local t = start(ctx, ratio)
      local sp = t[SPAN]
      if not sp then return next(req, ctx) end
      if sp.ev_in or sp.ev_out then streaming[ctx] = sp end
      local message
      ctx:on_done(function(code) finish(t, code, message) end)
      local ok, res = pcall(next, req, ctx)
      if ok then return res end
      -- A status error's message is what the client got; another error's
      -- text stays in the log (the client saw an error id).
      if core.is_status(res) then message = res.message end
      error(res, 0)
    end,
    recv = function(msg, ctx)
      message_event(ctx, "RECEIVED", "ev_in")
      return msg
    end,
    send = function(msg, ctx)
      message_event(ctx, "SENT", "ev_out")
      return msg
    end,
  }
end

return M
