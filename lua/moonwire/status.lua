--- moonwire.status: status codes and status errors.
--
-- A status error is a table {code =, message =, details =} with the
-- moonwire.status metatable; handlers raise one with mw.fail and the runtime
-- ends the call with its code and message. Anything else a handler raises
-- becomes INTERNAL with an error id (the traceback goes to the log only).
--
-- details (optional) is an array of detail tables, each a
-- google.protobuf.Any as the codec maps it:
-- {["@type"] = "type.googleapis.com/google.rpc.ErrorInfo", reason = ...}
-- (moonwire.details builds the standard ones). The runtime sends them as
-- grpc-status-details-bin, a google.rpc.Status with the call's code and
-- message; a detail the schema cannot encode is dropped there (logged), the
-- status stays.
local core = require "moonwire.core"

local M = {}

--- name -> number for every gRPC status code (OK = 0 ... UNAUTHENTICATED = 16).
M.codes = core.codes

local codes = core.codes
local mtype = math.type

--- The code as a number, or nil and why not. Names in any case
-- ("not_found"). For moonwire.errors too.
function M.code_of(code)
  if type(code) == "string" then
    local n = codes[code:upper()]
    if n then return n end
    return nil, "unknown status code '" .. code .. "'"
  end
  if mtype(code) == "integer" then
    if code >= 0 and code <= 16 then return code end
    return nil, "status code " .. code .. " out of range 0..16"
  end
  return nil, "a status code (a name such as \"NOT_FOUND\" or a number 0..16) expected, got "
    .. (mtype(code) or type(code)) .. (type(code) == "number" and " " .. tostring(code) or "")
end

--- nil when details is nil or an array of detail tables with "@type",
-- else what is wrong with it.
function M.details_problem(details)
  if details == nil then return nil end
  if type(details) ~= "table" then
    return "details must be an array of detail tables, got " .. type(details)
  end
  local n = #details
  for k in pairs(details) do
    if mtype(k) ~= "integer" or k < 1 or k > n then
      return "details must be an array of detail tables (found the key "
        .. (type(k) == "string" and "'" .. k .. "'" or tostring(k))
        .. "; wrap a single detail in {...})"
    end
  end
  for i = 1, n do
    local d = details[i]
    if type(d) ~= "table" then
      return "details[" .. i .. "] must be a table, got " .. type(d)
    end
    local t = rawget(d, "@type")
    if type(t) ~= "string" or t == "" then
      return "details[" .. i .. "] has no \"@type\" (build it with mw.details, e.g. "
        .. "mw.details.ErrorInfo{...}, or give [\"@type\"] = "
        .. "\"type.googleapis.com/<message name>\")"
    end
  end
  return nil
end

-- The checked arguments of fail and status; raises at the caller of the
-- caller (level 3 from here) with what is wrong.
local function checked(fname, code, message, details)
  local n, why = M.code_of(code)
  if not n then error(fname .. ": " .. why, 3) end
  if message ~= nil and type(message) ~= "string" then
    error(fname .. ": the message must be a string, got " .. type(message), 3)
  end
  local problem = M.details_problem(details)
  if problem then error(fname .. ": " .. problem, 3) end
  return n
end

--- Ends the call with a status: fail(mw.NOT_FOUND, "no such user" [, details]).
-- code is a number or a name ("NOT_FOUND"); details an array of detail
-- tables (moonwire.details). Never returns.
function M.fail(code, message, details)
  local n = checked("mw.fail", code, message, details)
  if n == 0 then error("mw.fail needs an error code, not OK", 2) end
  return core.fail(n, message, details)
end

--- A status error object, to raise later with error().
function M.status(code, message, details)
  local n = checked("mw.status", code, message, details)
  return core.status(n, message, details)
end

--- True when err is a status error object.
M.is_status = core.is_status

--- A google.rpc.Status in its wire form (what grpc-status-details-bin
-- carries) -> a status object whose details are tables (an Any of a type the
-- schema lacks stays {["@type"] = url, ["@value"] = bytes}); nil, err for
-- bytes that are not one.
M.decode = core.decode_status

--- A status object -> its google.rpc.Status bytes; nil, err when a detail
-- cannot be encoded.
M.encode = core.encode_status

local is_status = core.is_status

--- True when err is the error a wait raises because the call was cancelled
-- or its deadline passed.
function M.is_cancelled(err)
  return is_status(err) and err.cancelled == true
end

return M
