--- The built-in server reflection service, grpc.reflection.v1 and
-- v1alpha (the same protocol under two package names; on unless the
-- config says `reflection: false`). grpcurl, buf curl, grpcui, Postman and
-- evans list and call services through it without a .proto at hand.
--
-- Answers come from the schema of the generation the stream runs in
-- (moonwire.core's reflect_* lookups). A file is sent with the files it
-- depends on, each under the name the others import it by; on one stream a
-- dependency already sent is not sent again, while the file asked for
-- always is (as grpc-go does: a client may have dropped it). A name nobody
-- defines is an error_response NOT_FOUND on the stream, not a failed call;
-- a request that asks nothing fails the call with INVALID_ARGUMENT.
local mw = require "moonwire"
local core = require "moonwire.core"

local NOT_FOUND = mw.NOT_FOUND

local function not_found(what)
  return {error_response = {error_code = NOT_FOUND, error_message = what}}
end

-- The file `name` and what it depends on, that this stream has not seen.
local function files(name, sent)
  local out = {}
  local function add(n, asked)
    if sent[n] and not asked then return end
    local bytes, deps = core.reflect_file(n)
    if not bytes then return end
    sent[n] = true
    out[#out + 1] = bytes
    for _, d in ipairs(deps) do add(d, false) end
  end
  add(name, true)
  return {file_descriptor_response = {file_descriptor_proto = out}}
end

local function answer(req, sent)
  if req.list_services ~= nil then
    local list = {}
    for i, name in ipairs(core.reflect_services()) do list[i] = {name = name} end
    return {list_services_response = {service = list}}
  elseif req.file_by_filename ~= nil then
    if not core.reflect_file(req.file_by_filename) then
      return not_found("file not found: " .. req.file_by_filename)
    end
    return files(req.file_by_filename, sent)
  elseif req.file_containing_symbol ~= nil then
    local file = core.reflect_symbol(req.file_containing_symbol)
    if not file then return not_found("symbol not found: " .. req.file_containing_symbol) end
    return files(file, sent)
  elseif req.file_containing_extension ~= nil then
    local e = req.file_containing_extension
    local file = core.reflect_extension(e.containing_type, e.extension_number)
    if not file then
      return not_found(("extension not found: %s %d"):format(e.containing_type, e.extension_number))
    end
    return files(file, sent)
  elseif req.all_extension_numbers_of_type ~= nil then
    local numbers = core.reflect_extension_numbers(req.all_extension_numbers_of_type)
    if not numbers then return not_found("type not found: " .. req.all_extension_numbers_of_type) end
    table.sort(numbers)
    return {all_extension_numbers_response = {
      base_type_name = req.all_extension_numbers_of_type, extension_number = numbers}}
  end
end

local function info(stream)
  local sent = {} -- files sent on this stream
  for req in stream:iter() do
    local res = answer(req, sent)
    if not res then mw.fail(mw.INVALID_ARGUMENT, "the request asks for nothing (no message_request set)") end
    res.valid_host = req.host
    res.original_request = req
    stream:send(res)
  end
end

mw.service("grpc.reflection.v1.ServerReflection").ServerReflectionInfo = info
mw.service("grpc.reflection.v1alpha.ServerReflection").ServerReflectionInfo = info
