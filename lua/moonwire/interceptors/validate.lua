--- moonwire.interceptors.validate: a Lua predicate over every request
-- message (and, with responses: true, every response message).
--
--   mw.intercept("/shop.Orders/Place", mw.interceptors.validate{
--     fn = function(msg, ctx)
--       if msg.quantity <= 0 then
--         return false, {{field = "quantity", description = "must be positive"}}
--       end
--       return true
--     end})
--
-- or from the config, naming a function of a module in the service
-- directories: `validate: {rule: "orders_rules.place"}` (module
-- orders_rules, its function place). The function returns true when the
-- message is valid, else false (or nil) and the violations: an array of
-- {field =, description =}, or one string. A request that fails ends the
-- call with INVALID_ARGUMENT and a BadRequest listing them; a response
-- that fails is the server's fault: INTERNAL, with the same BadRequest.
local mw = require "moonwire"

local type, pairs, ipairs, tostring, error, require, pcall, concat =
  type, pairs, ipairs, tostring, error, require, pcall, table.concat

local check_options = require("moonwire.intercept").check_options

local M = {}

-- A message lists at most this many violations (the rest are counted).
local MAX_VIOLATIONS = 32

local function resolve(rule)
  if type(rule) ~= "string" then error("rule must name a function: \"module.function\"", 0) end
  local modname, fname = rule:match "^([%w_%.]+)%.([%w_]+)$"
  if not modname then error(("rule '%s' is not \"module.function\""):format(rule), 0) end
  local ok, mod = pcall(require, modname)
  if not ok then error(("rule '%s': cannot load module '%s': %s"):format(rule, modname, tostring(mod)), 0) end
  local f = type(mod) == "table" and mod[fname]
  if type(f) ~= "function" then
    error(("rule '%s': module '%s' has no function '%s'"):format(rule, modname, fname), 0)
  end
  return f
end

-- The violations a predicate returned, as BadRequest field violations.
local function violations_of(v)
  if type(v) == "string" then return {{field = "", description = v}} end
  local out = {}
  if type(v) == "table" then
    for i, item in ipairs(v) do
      if i > MAX_VIOLATIONS then break end
      if type(item) == "table" then
        out[#out + 1] = {field = tostring(item.field or ""), description = tostring(item.description or "invalid")}
      else
        out[#out + 1] = {field = "", description = tostring(item)}
      end
    end
  end
  if #out == 0 then out[1] = {field = "", description = "the message is not valid"} end
  return out
end

local function fail(code, what, v)
  local fv = violations_of(v)
  local parts = {}
  for i, x in ipairs(fv) do
    if i > 4 then parts[#parts + 1] = ("and %d more"):format(#fv - 4) break end
    parts[#parts + 1] = x.field ~= "" and (x.field .. ": " .. x.description) or x.description
  end
  mw.fail(code, what .. ": " .. concat(parts, "; "), {mw.details.BadRequest({field_violations = fv})})
end

function M.new(opts, env)
  opts = opts or {}
  check_options(opts, {"fn", "rule", "requests", "responses"})
  local fn = opts.fn
  if fn == nil and opts.rule ~= nil then fn = resolve(opts.rule) end
  if type(fn) ~= "function" then error("give fn (a function) or rule (\"module.function\")", 0) end
  local i = {name = "validate"}
  if opts.requests ~= false then
    i.recv = function(msg, ctx)
      local ok, v = fn(msg, ctx)
      if not ok then fail(mw.INVALID_ARGUMENT, "invalid request", v) end
    end
  end
  if opts.responses == true then
    i.send = function(msg, ctx)
      local ok, v = fn(msg, ctx)
      if not ok then fail(mw.INTERNAL, "invalid response", v) end
    end
  end
  return i
end

return M
