-- grpc.testing.TestService as gRPC's interop test descriptions define it.
-- UnimplementedCall is left unimplemented on purpose: clients expect
-- UNIMPLEMENTED from it.
local mw = require "moonwire"

local TestService = mw.service "grpc.testing.TestService"

local function payload(size)
  return {type = "COMPRESSABLE", body = string.rep("\0", size)}
end

-- Echo the metadata the custom_metadata case sends.
local function echo_metadata(ctx)
  local initial = ctx.metadata["x-grpc-test-echo-initial"]
  if initial then ctx:set_header("x-grpc-test-echo-initial", initial) end
  local trailing = ctx.metadata["x-grpc-test-echo-trailing-bin"]
  if trailing then ctx:set_trailer("x-grpc-test-echo-trailing-bin", trailing) end
end

-- A requested status (status_code_and_message, special_status_message).
local function maybe_fail(req)
  local st = req.response_status
  if st and st.code ~= 0 then mw.fail(st.code, st.message) end
end

function TestService.EmptyCall(req, ctx)
  echo_metadata(ctx)
  return {}
end

function TestService.UnaryCall(req, ctx)
  echo_metadata(ctx)
  maybe_fail(req)
  return {payload = payload(req.response_size)}
end

function TestService.CacheableUnaryCall(req, ctx)
  ctx:set_header("cache-control", "max-age=60")
  return TestService.UnaryCall(req, ctx)
end

function TestService.StreamingOutputCall(req, stream, ctx)
  echo_metadata(ctx)
  for _, p in ipairs(req.response_parameters) do
    if p.interval_us > 0 then mw.sleep(p.interval_us / 1e6) end
    stream:send{payload = payload(p.size)}
  end
  maybe_fail(req)
end

function TestService.StreamingInputCall(stream, ctx)
  echo_metadata(ctx)
  local total = 0
  for req in stream:iter() do
    total = total + #(req.payload and req.payload.body or "")
  end
  return {aggregated_payload_size = total}
end

local function respond(req, stream)
  maybe_fail(req)
  for _, p in ipairs(req.response_parameters) do
    if p.interval_us > 0 then mw.sleep(p.interval_us / 1e6) end
    stream:send{payload = payload(p.size)}
  end
end

function TestService.FullDuplexCall(stream, ctx)
  echo_metadata(ctx)
  for req in stream:iter() do respond(req, stream) end
end

function TestService.HalfDuplexCall(stream, ctx)
  echo_metadata(ctx)
  local requests = {}
  for req in stream:iter() do requests[#requests + 1] = req end
  for _, req in ipairs(requests) do respond(req, stream) end
end

return TestService
