--- moonwire.errors: the error catalogue, one place for the business errors
-- of a service: their codes, messages and reasons.
--
--   mw.errors {
--     NAME_TAKEN = {code = "ALREADY_EXISTS", message = "name {name} is taken",
--                   reason = "NAME_TAKEN", domain = "shop.example"},
--   }
--   mw.errors "errors.yaml"          -- the same as YAML, beside the script
--   ...
--   mw.fail("NAME_TAKEN", {name = req.name})
--
-- mw.fail(name, fields [, details]) raises the entry's code with its message,
-- {placeholders} filled from fields, and the details: an ErrorInfo {reason
-- (the entry's, else its name), domain, metadata = fields as strings}, then
-- the entry's own details, then those given. Names are those of the
-- catalogue or status codes; the two never collide (refused at definition).
-- The catalogue belongs to the Lua state: every script of the generation
-- shares it and a reload starts a new one.
local core = require "moonwire.core"
local status = require "moonwire.status"
local details = require "moonwire.details"

local M = {}

local catalogue = {} -- name -> entry (checked copies)
local codes = core.codes

local ENTRY_KEYS = {code = true, message = true, reason = true, domain = true,
                    details = true, metadata = true}

-- Checks one definition and returns the entry; raises with where it was
-- defined ("errors.yaml:12: ..." for a YAML file, else at the caller).
local function entry_of(name, def, where)
  local function bad(msg)
    if where then error(where .. ": " .. msg, 0) end
    error("mw.errors: " .. msg, 4) -- bad, entry_of, define, its caller
  end
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    bad("error names are identifiers such as NAME_TAKEN, got " .. tostring(name))
  end
  if codes[name:upper()] then
    bad("'" .. name .. "' is a status code name: choose another name for the error")
  end
  if catalogue[name] then bad("'" .. name .. "' is defined twice") end
  if type(def) ~= "table" then
    bad(name .. ": a table {code =, message =, ...} expected, got " .. type(def))
  end
  for k in pairs(def) do
    if not ENTRY_KEYS[k] then
      bad(name .. ": unknown key '" .. tostring(k)
          .. "' (code, message, reason, domain, details, metadata)")
    end
  end
  local code, why = status.code_of(def.code)
  if not code then bad(name .. ": " .. why) end
  if code == 0 then bad(name .. ": an error needs an error code, not OK") end
  if type(def.message) ~= "string" then bad(name .. ": message (a string) is missing") end
  for _, k in ipairs {"reason", "domain"} do
    if def[k] ~= nil and type(def[k]) ~= "string" then
      bad(name .. ": " .. k .. " must be a string")
    end
  end
  local problem = status.details_problem(def.details)
  if problem then bad(name .. ": " .. problem) end
  if def.metadata ~= nil and type(def.metadata) ~= "table" then
    bad(name .. ": metadata must be a table of strings")
  end
  return {name = name, code = code, message = def.message, reason = def.reason or name,
          domain = def.domain, details = def.details or {}, metadata = def.metadata or {}}
end

--- Adds errors to the catalogue: a table name -> definition, or the path of
-- a YAML file of the same shape (relative to the calling script).
function M.define(defs)
  local where = {}
  if type(defs) == "string" then
    local value
    value, where = core.load_yaml(defs, 2)
    defs = value
  end
  if type(defs) ~= "table" then
    error("mw.errors: a table of errors (or a YAML file's path) expected, got " .. type(defs), 2)
  end
  -- Checked in name order (messages stay the same from run to run), all
  -- before any is added: a bad entry adds none.
  local names = {}
  for name in pairs(defs) do
    if type(name) ~= "string" then
      error("mw.errors: error names are strings, got " .. type(name), 2)
    end
    names[#names + 1] = name
  end
  table.sort(names)
  local entries = {}
  for i, name in ipairs(names) do
    entries[i] = entry_of(name, defs[name], where[defs[name]] or where[defs])
  end
  for _, e in ipairs(entries) do catalogue[e.name] = e end
end

--- The entry of a name (a read-only copy), or nil.
function M.lookup(name)
  local e = catalogue[name]
  if not e then return nil end
  return {name = e.name, code = e.code, message = e.message, reason = e.reason,
          domain = e.domain}
end

-- The message with {field} placeholders filled, and the first field it
-- lacks (nil when none).
local function fill(e, fields)
  local missing
  local msg = e.message:gsub("{([%a_][%w_]*)}", function(k)
    local v = fields[k]
    if v == nil then
      missing = missing or k
      return nil
    end
    return tostring(v)
  end)
  return msg, missing
end

-- The status object of a catalogue error (checks raise at level 3 from here:
-- the caller of fail/status).
local function build(fname, e, fields, extra)
  if fields ~= nil and type(fields) ~= "table" then
    error(("%s: %s takes a table of fields, got %s"):format(fname, e.name, type(fields)), 3)
  end
  fields = fields or {}
  local problem = status.details_problem(extra)
  if problem then error(fname .. ": " .. problem, 3) end
  local md = {}
  for k, v in pairs(e.metadata) do md[tostring(k)] = tostring(v) end
  for k, v in pairs(fields) do
    local t = type(v)
    if t ~= "string" and t ~= "number" and t ~= "boolean" then
      error(("%s: %s: field '%s' must be a string, number or boolean, got %s"):format(
        fname, e.name, tostring(k), t), 3)
    end
    md[tostring(k)] = tostring(v)
  end
  local message, missing = fill(e, fields)
  if missing then
    error(("%s: %s's message needs the field '%s'"):format(fname, e.name, missing), 3)
  end
  local list = {details.ErrorInfo {reason = e.reason, domain = e.domain, metadata = md}}
  for _, d in ipairs(e.details) do list[#list + 1] = d end
  for _, d in ipairs(extra or {}) do list[#list + 1] = d end
  local st = core.status(e.code, message, list)
  st.error = e.name
  return st
end

local function unknown(fname, name)
  error(("%s: unknown status code or error name '%s': neither a status code nor an error "
         .. "of the catalogue (mw.errors)"):format(fname, name), 3)
end

--- mw.fail: a catalogue name with its fields and extra details, or a code
-- with a message and details (moonwire.status.fail).
function M.fail(code, a, b)
  -- A status error caught earlier (an outbound call's err): raised again
  -- as it is, its code, message and details becoming the call's.
  if status.is_status(code) and a == nil then error(code, 0) end
  if type(code) == "string" and not codes[code:upper()] then
    local e = catalogue[code]
    if not e then unknown("mw.fail", code) end
    error(build("mw.fail", e, a, b), 0)
  end
  return status.fail(code, a, b)
end

--- mw.status: the same, returning the status object instead of raising it.
function M.status(code, a, b)
  if type(code) == "string" and not codes[code:upper()] then
    local e = catalogue[code]
    if not e then unknown("mw.status", code) end
    return build("mw.status", e, a, b)
  end
  return status.status(code, a, b)
end

--- Whether err is the catalogue error name: a status error with its code
-- and an ErrorInfo of its reason and domain (so a decoded status matches too).
function M.is(err, name)
  local e = catalogue[name]
  if not e then error("mw.is_error: '" .. tostring(name) .. "' is not in the catalogue", 2) end
  if not core.is_status(err) or err.code ~= e.code then return false end
  for _, d in ipairs(err.details or {}) do
    if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" and d.reason == e.reason
        and (d.domain or "") == (e.domain or "") then
      return true
    end
  end
  return false
end

--- mw.load_yaml(path): a YAML file beside the calling script as tables.
function M.load_yaml(path)
  if type(path) ~= "string" then error("mw.load_yaml: a path expected", 2) end
  return (core.load_yaml(path, 2))
end

return M
