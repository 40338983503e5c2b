--- moonwire.interceptors.access_log: one structured line per call through
-- the server's log (log.format text or json), written when the call has
-- ended, so that it shows what the client got:
--
--   access method=/pkg.S/M kind=unary status=OK duration_ms=0.41
--     peer=ipv4:127.0.0.1:5555 request_bytes=12 response_bytes=30
--     request_messages=1 response_messages=1 generation=1 [trace_id=...]
--     [protocol=connect]     (calls of the HTTP listener: grpc-web, connect...)
--
-- Options: calls = "all" (default) or "errors" (only calls that did not end
-- OK); level = "info" (default), "debug", "warn" or "error".
local mw = require "moonwire"
local core = require "moonwire.core"

local names = {}
for name, code in pairs(mw.codes) do names[code] = name end

local check_options = require("moonwire.intercept").check_options

local M = {}

local function check(opts)
  check_options(opts, {"calls", "level"})
  local calls = opts.calls or "all"
  if calls ~= "all" and calls ~= "errors" then
    error(("calls must be 'all' or 'errors', not '%s'"):format(tostring(calls)), 0)
  end
  local level = opts.level or "info"
  if level ~= "debug" and level ~= "info" and level ~= "warn" and level ~= "error" then
    error(("level must be debug, info, warn or error, not '%s'"):format(tostring(level)), 0)
  end
  return calls == "errors", level
end

function M.new(opts, env)
  local errors_only, level = check(opts or {})
  local log, now = core.log, mw.now
  local generation = core.generation() -- the instance lives in one generation
  return {
    name = "access_log",
    call = function(req, ctx, next)
      ctx:on_done(function(code)
        if errors_only and code == 0 then return end
        local io = ctx:io()
        local fields = {
          method = ctx.method,
          kind = ctx.kind,
          status = names[code] or tostring(code),
          duration_ms = ("%.3f"):format((now() - io.start) * 1000),
          peer = ctx.peer,
          request_bytes = io.bytes_in,
          response_bytes = io.bytes_out,
          request_messages = io.msgs_in,
          response_messages = io.msgs_out,
          generation = generation,
        }
        -- Outbound calls the handler made, and how many were retries.
        if io.client_calls > 0 then
          fields.client_calls = io.client_calls
          fields.client_retries = io.client_retries
        end
        local trace = ctx.trace
        if trace then fields.trace_id = trace.trace_id end
        local protocol = ctx.protocol
        if protocol ~= "grpc" then fields.protocol = protocol end
        log(level, "access", fields)
      end)
      return next(req, ctx)
    end,
  }
end

return M
