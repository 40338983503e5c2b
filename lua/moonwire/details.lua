--- moonwire.details: builders of the standard error details
-- (google/rpc/error_details.proto), for mw.fail's third argument:
--
--   mw.fail(mw.INVALID_ARGUMENT, "bad request", {
--     mw.details.BadRequest{name = "must not be empty"},
--     mw.details.Help{url = "https://example.com/names", description = "naming rules"},
--   })
--
-- Each builder returns a new table {["@type"] = "type.googleapis.com/google.rpc.X",
-- <fields>} (the argument is not changed) and raises, at its caller, for a
-- field the message does not have. Besides the message's own fields, the
-- convenience forms (docs/lua-api.md, "Rich errors"):
--   RetryInfo(1.5) / RetryInfo{retry_delay = 1.5}  seconds as a number
--   BadRequest{name = "why", ...}                  field -> description
--   BadRequest{{field =, description =}, ...}      the violations as an array
--   QuotaFailure{subject = "why"} / {{...}, ...}   likewise
--   PreconditionFailure{{type =, subject =, description =}, ...}
--   Help{url =, description =} / Help{{...}, ...}  one link, or several
--   DebugInfo("text") / DebugInfo{detail =, stack_entries = "multi\nline"}
--   LocalizedMessage("en-US", "text")
--   ErrorInfo{reason =, domain =, metadata = {k = v}}  values made strings
-- and any(type_name, fields) for a detail of any message the schema has.
local M = {}

local PREFIX = "type.googleapis.com/"
local mtype = math.type

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- Raises at the builder's caller (the builder calls this directly).
local function check_fields(name, t, fields)
  for k in pairs(t) do
    if not fields[k] then
      local list = {}
      for f in pairs(fields) do list[#list + 1] = f end
      table.sort(list)
      error(("mw.details.%s: google.rpc.%s has no field '%s' (fields: %s)"):format(
        name, name, tostring(k), table.concat(list, ", ")), 3)
    end
  end
end

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- Whether t is a non-empty map of string keys to string values (the
-- convenience form field -> description).
local function string_map(t)
  local any = false
  for k, v in pairs(t) do
    if type(k) ~= "string" or type(v) ~= "string" then return false end
    any = true
  end
  return any
end

local function sorted_pairs_list(t, kname, vname)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local list = {}
  for i, k in ipairs(keys) do list[i] = {[kname] = k, [vname] = t[k]} end
  return list
end

local function arg_table(name, t)
  if type(t) ~= "table" then
    error(("mw.details.%s: a table expected, got %s"):format(name, type(t)), 3)
  end
end

-- A builder for a message whose fields are taken as they are.
local function plain(name, fields)
  local known = set(fields)
  return function(t)
    arg_table(name, t)
    check_fields(name, t, known)
    local d = copy(t)
    d["@type"] = PREFIX .. "google.rpc." .. name
    return d
  end
end

--- A detail of any message type the schema knows: any("pkg.MyError", {...}).
function M.any(type_name, fields)
  if type(type_name) ~= "string" or type_name == "" then
    error("mw.details.any: a message type name expected", 2)
  end
  if fields ~= nil and type(fields) ~= "table" then
    error("mw.details.any: the fields must be a table, got " .. type(fields), 2)
  end
  local d = fields and copy(fields) or {}
  d["@type"] = type_name:find("/", 1, true) and type_name or PREFIX .. type_name
  return d
end

local error_info_fields = set {"reason", "domain", "metadata"}

function M.ErrorInfo(t)
  arg_table("ErrorInfo", t)
  check_fields("ErrorInfo", t, error_info_fields)
  local d = copy(t)
  if t.metadata ~= nil then
    if type(t.metadata) ~= "table" then
      error("mw.details.ErrorInfo: metadata must be a table of strings", 2)
    end
    local md = {}
    for k, v in pairs(t.metadata) do
      if type(v) == "table" or type(v) == "function" then
        error(("mw.details.ErrorInfo: metadata '%s' must be a string, number or boolean"):format(
          tostring(k)), 2)
      end
      md[tostring(k)] = tostring(v)
    end
    d.metadata = md
  end
  d["@type"] = PREFIX .. "google.rpc.ErrorInfo"
  return d
end

-- seconds (a number) -> google.protobuf.Duration's table.
local function duration(s)
  local whole = s >= 0 and math.floor(s) or math.ceil(s)
  local nanos = math.floor((s - whole) * 1e9 + 0.5)
  -- Rounding can reach a whole second (0.9999999999): carry it, as a
  -- Duration's nanos must stay within -999,999,999 .. 999,999,999.
  if nanos >= 1000000000 then
    whole, nanos = whole + 1, nanos - 1000000000
  elseif nanos <= -1000000000 then
    whole, nanos = whole - 1, nanos + 1000000000
  end
  return {seconds = mtype(whole) == "integer" and whole or math.tointeger(whole) or 0,
          nanos = nanos}
end

function M.RetryInfo(t)
  if type(t) == "number" then t = {retry_delay = t} end
  arg_table("RetryInfo", t)
  check_fields("RetryInfo", t, set {"retry_delay"})
  local d = copy(t)
  if type(t.retry_delay) == "number" then d.retry_delay = duration(t.retry_delay) end
  d["@type"] = PREFIX .. "google.rpc.RetryInfo"
  return d
end

function M.DebugInfo(t)
  if type(t) == "string" then t = {detail = t} end
  arg_table("DebugInfo", t)
  check_fields("DebugInfo", t, set {"detail", "stack_entries"})
  local d = copy(t)
  if type(t.stack_entries) == "string" then
    local lines = {}
    for line in t.stack_entries:gmatch("[^\n]+") do lines[#lines + 1] = line end
    d.stack_entries = lines
  end
  d["@type"] = PREFIX .. "google.rpc.DebugInfo"
  return d
end

-- A builder for a message holding one repeated field of violations (or
-- links), taking the message as it is, the list as an array, or (kname set)
-- a map kname -> vname.
local function list_of(name, field, item_fields, kname, vname)
  local known = set {field}
  local item_known = set(item_fields)
  return function(t)
    arg_table(name, t)
    local list
    if t[field] ~= nil then
      check_fields(name, t, known)
      list = t[field]
    elseif t[1] ~= nil then
      list = t
    elseif kname and string_map(t) then
      list = sorted_pairs_list(t, kname, vname)
    elseif next(t) == nil then
      list = {}
    else
      -- One item given directly (Help{url =, description =}).
      check_fields(name, t, item_known)
      list = {t}
    end
    if type(list) ~= "table" then
      error(("mw.details.%s: %s must be an array"):format(name, field), 2)
    end
    local items = {}
    for i, item in ipairs(list) do
      if type(item) ~= "table" then
        error(("mw.details.%s: %s[%d] must be a table"):format(name, field, i), 2)
      end
      for k in pairs(item) do
        if not item_known[k] then
          error(("mw.details.%s: %s[%d] has no field '%s'"):format(name, field, i, tostring(k)), 2)
        end
      end
      items[i] = copy(item)
    end
    return {["@type"] = PREFIX .. "google.rpc." .. name, [field] = items}
  end
end

M.BadRequest = list_of("BadRequest", "field_violations",
                       {"field", "description", "reason", "localized_message"},
                       "field", "description")
M.QuotaFailure = list_of("QuotaFailure", "violations", {"subject", "description"},
                         "subject", "description")
M.PreconditionFailure = list_of("PreconditionFailure", "violations",
                                {"type", "subject", "description"})
M.Help = list_of("Help", "links", {"description", "url"})

M.RequestInfo = plain("RequestInfo", {"request_id", "serving_data"})
M.ResourceInfo = plain("ResourceInfo", {"resource_type", "resource_name", "owner", "description"})

local localized = plain("LocalizedMessage", {"locale", "message"})
function M.LocalizedMessage(t, message)
  if type(t) == "string" then t = {locale = t, message = message} end
  return localized(t)
end

return M
