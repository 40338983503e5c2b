--- moonwire.stub: stub mode, the mock-server half of Moonwire.
--
-- A service directory may hold stub files in gripmock's v3 format
-- (`*.stubs.yaml`, `*.stubs.yml`, `*.stubs.json`, or any .yaml/.yml/.json in
-- a `stubs/` folder; docs/stubs.md). When the scripts have been bound,
-- moonwire.service calls bind: every method that has no Lua handler gets a
-- handler from here (a Lua function like any other, so interceptors,
-- deadlines and the resume loop treat it as they treat handlers), but only
-- when stub mode is on: some stub was loaded, or `serve --stub-all`. With
-- it off nothing is bound and nothing costs anything.
--
-- Stubs are indexed by method path first; within a method they are sorted
-- once, at load, by specificity (an `equals` leaf counts 3, `contains` 2,
-- `matches` 1, headers alike), then `priority`, then file order, so a call
-- takes the first that matches and stubs of other methods cost nothing.
--
-- Stub `input` and `output.data` are proto3 JSON (JSON or proto field
-- names, 64-bit integers as strings or numbers, enums by name or number,
-- bytes as base64): they are turned into the codec's tables once, at load,
-- with the message's shape (core.message_shape), so a bad field name or
-- value fails the load with the file and the stub named.
local core = require "moonwire.core"

local pairs, ipairs, type, tostring, tonumber = pairs, ipairs, type, tostring, tonumber
local mtype, tointeger = math.type, math.tointeger
local concat, sort = table.concat, table.sort

local M = {}

-- --- shapes and proto3 JSON forms ----------------------------------------------

local shapes = {} -- full message name -> shape with `by` (proto and JSON names)

local function shape_of(name)
  local s = shapes[name]
  if s == nil then
    s = core.message_shape(name)
    if not s then error("no message " .. name .. " in the loaded .proto files", 0) end
    s.by = {}
    for _, f in ipairs(s.fields) do
      s.by[f.name] = f
      s.by[f.json] = f
    end
    shapes[name] = s
  end
  return s
end

local B64 = {}
do
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for i = 1, 64 do B64[alphabet:byte(i)] = i - 1 end
  B64[("-"):byte()] = 62 -- the URL-safe alphabet too, as proto3 JSON parsers accept
  B64[("_"):byte()] = 63
end

local function b64decode(s, where)
  s = s:gsub("=+$", "")
  local out, bits, n = {}, 0, 0
  for i = 1, #s do
    local v = B64[s:byte(i)]
    if not v then error(where .. ": bytes must be base64", 0) end
    bits = (bits << 6) | v
    n = n + 6
    if n >= 8 then
      n = n - 8
      out[#out + 1] = string.char((bits >> n) & 0xff)
    end
  end
  return concat(out)
end

local INT = {int32 = true, uint32 = true, int64 = true, uint64 = true}

local to_lua -- forward: a JSON-form message -> the codec's table

-- One JSON-form value of field f -> the codec's form.
local function value_of(f, v, where)
  local t = f.type
  if INT[t] then
    local n = v
    if type(v) == "string" then
      if not v:match "^%-?%d+$" then error(where .. ": an integer expected, got \"" .. v .. "\"", 0) end
      n = tointeger(tonumber(v))
      if n == nil then return v end -- a uint64 past 2^63: the codec takes the decimal string
    end
    if type(n) ~= "number" or tointeger(n) == nil then
      error(where .. ": an integer expected, got " .. tostring(v), 0)
    end
    return tointeger(n)
  elseif t == "float" or t == "double" then
    if type(v) == "string" then
      local special = {NaN = 0 / 0, Infinity = math.huge, ["-Infinity"] = -math.huge}
      if special[v] then return special[v] end
      local n = tonumber(v)
      if not n then error(where .. ": a number expected, got \"" .. v .. "\"", 0) end
      return n + 0.0
    end
    if type(v) ~= "number" then error(where .. ": a number expected, got " .. type(v), 0) end
    return v + 0.0
  elseif t == "bool" then
    if type(v) ~= "boolean" then error(where .. ": true or false expected, got " .. tostring(v), 0) end
    return v
  elseif t == "string" then
    if type(v) ~= "string" then error(where .. ": a string expected, got " .. tostring(v), 0) end
    return v
  elseif t == "bytes" then
    if type(v) ~= "string" then error(where .. ": base64 bytes expected, got " .. tostring(v), 0) end
    return b64decode(v, where)
  elseif t == "enum" then
    if mtype(v) == "integer" then return f.enum[-v - 1] or v end
    if type(v) == "string" then
      for _, name in ipairs(f.enum) do if name == v then return v end end
      error(where .. ": no value " .. v .. " in the enum (values: " .. concat(f.enum, ", ") .. ")", 0)
    end
    error(where .. ": an enum name or number expected, got " .. tostring(v), 0)
  elseif t == "message" then
    if type(v) ~= "table" then error(where .. ": an object expected, got " .. tostring(v), 0) end
    return to_lua(v, f.message, where)
  end
  error(where .. ": fields of type " .. t .. " are not supported in stubs", 0)
end

local function field_of(f, v, where)
  if f.map then
    if type(v) ~= "table" then error(where .. ": an object expected", 0) end
    local out = {}
    for k, x in pairs(v) do
      local key = value_of(f.key, type(k) == "number" and tostring(k) or k, where .. "." .. tostring(k))
      out[key] = value_of(f.value, x, where .. "." .. tostring(k))
    end
    return out
  elseif f.repeated then
    if type(v) ~= "table" then error(where .. ": an array expected", 0) end
    local out = {}
    for i, x in ipairs(v) do out[i] = value_of(f, x, where .. "[" .. i .. "]") end
    return out
  end
  return value_of(f, v, where)
end

function to_lua(t, msg, where)
  local s = shape_of(msg)
  local out = {}
  for k, v in pairs(t) do
    local f = type(k) == "string" and s.by[k]
    if not f then
      local names = {}
      for _, g in ipairs(s.fields) do names[#names + 1] = g.name end
      error(("%s: message %s has no field '%s' (fields: %s)")
        :format(where, msg, tostring(k), concat(names, ", ")), 0)
    end
    out[f.name] = field_of(f, v, where .. "." .. f.name)
  end
  return out
end
M.to_lua = to_lua

local B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local k = #out
    out[k + 1] = B64_CHARS:sub((n >> 18) + 1, (n >> 18) + 1)
    out[k + 2] = B64_CHARS:sub(((n >> 12) & 63) + 1, ((n >> 12) & 63) + 1)
    out[k + 3] = b and B64_CHARS:sub(((n >> 6) & 63) + 1, ((n >> 6) & 63) + 1) or "="
    out[k + 4] = c and B64_CHARS:sub((n & 63) + 1, (n & 63) + 1) or "="
  end
  return concat(out)
end

local to_json -- forward: the codec's table -> proto3 JSON form

local function json_value(f, v)
  local t = f.type
  if t == "int64" or t == "uint64" then return tostring(v) -- proto3 JSON's form
  elseif t == "float" or t == "double" then
    if v ~= v then return "NaN" elseif v == math.huge then return "Infinity"
    elseif v == -math.huge then return "-Infinity" end
    return v
  elseif t == "bytes" then return b64encode(v)
  elseif t == "message" then return to_json(v, f.message)
  end
  return v
end

-- The codec's table t of message msg in proto3 JSON form (JSON names,
-- 64-bit integers as strings, bytes as base64), for --record's files.
function to_json(t, msg)
  local s = shape_of(msg)
  local out = {}
  for _, f in ipairs(s.fields) do
    local v = t[f.name]
    if v ~= nil then
      if f.map then
        local m = {}
        for k, x in pairs(v) do m[tostring(k)] = json_value(f.value, x) end
        out[f.json] = m
      elseif f.repeated then
        local a = core.json_array({})
        for i, x in ipairs(v) do a[i] = json_value(f, x) end
        out[f.json] = a
      else
        out[f.json] = json_value(f, v)
      end
    end
  end
  return out
end
M.to_json = to_json

-- --- matching ------------------------------------------------------------------

local function is_array(t)
  return type(t) == "table" and (t[1] ~= nil or next(t) == nil)
end

local equal -- forward

-- Arrays a and b hold the same elements in any order.
local function same_multiset(a, b, unordered)
  if #a ~= #b then return false end
  local used = {}
  for i = 1, #a do
    local found = false
    for j = 1, #b do
      if not used[j] and equal(a[i], b[j], unordered) then
        used[j], found = true, true
        break
      end
    end
    if not found then return false end
  end
  return true
end

-- expect equals actual: scalars by value; arrays whole (in order unless
-- unordered); messages and maps by the keys expect declares.
function equal(e, a, unordered)
  if type(e) ~= "table" then
    if type(e) == "number" and type(a) == "string" then return tostring(e) == a end
    return e == a
  end
  if type(a) ~= "table" then return false end
  if is_array(e) and next(e) ~= nil then
    if unordered then return same_multiset(e, a, unordered) end
    if #e ~= #a then return false end
    for i = 1, #e do if not equal(e[i], a[i], unordered) then return false end end
    return true
  end
  for k, v in pairs(e) do
    if not equal(v, a[k], unordered) then return false end
  end
  return true
end

-- expect is contained in actual: recursively, arrays as subsets in any order.
local function contains(e, a)
  if type(e) ~= "table" then return equal(e, a) end
  if type(a) ~= "table" then return false end
  if is_array(e) and next(e) ~= nil then
    for _, x in ipairs(e) do
      local found = false
      for _, y in ipairs(a) do
        if contains(x, y) then found = true break end
      end
      if not found then return false end
    end
    return true
  end
  for k, v in pairs(e) do
    if not contains(v, a[k]) then return false end
  end
  return true
end

-- expect (compiled regexes in the same shape) matches actual: a regex
-- against a scalar's text, arrays element by element, messages by key.
local function matches(e, a)
  if type(e) == "userdata" then
    if type(a) == "table" or a == nil then return false end
    return e:test(tostring(a))
  end
  if type(a) ~= "table" then return false end
  if is_array(e) and next(e) ~= nil then
    if #e ~= #a then return false end
    for i = 1, #e do if not matches(e[i], a[i]) then return false end end
    return true
  end
  for k, v in pairs(e) do
    if not matches(v, a[k]) then return false end
  end
  return true
end

-- How many leaves a matcher has (its weight in the ranking).
local function leaves(t)
  if type(t) ~= "table" then return 1 end
  local n = 0
  for _, v in pairs(t) do n = n + leaves(v) end
  return n
end

-- A compiled matcher {equals=, contains=, matches=, unordered=} against one
-- message (a table in codec form): whether it matches, and how many of its
-- top-level entries did (for the closest-stubs list).
local function match_one(m, msg)
  local hit, total = 0, 0
  local ok = true
  if m.equals then
    for k, v in pairs(m.equals) do
      total = total + 1
      if equal(v, msg[k], m.unordered) then hit = hit + 1 else ok = false end
    end
  end
  if m.contains then
    for k, v in pairs(m.contains) do
      total = total + 1
      if contains(v, msg[k]) then hit = hit + 1 else ok = false end
    end
  end
  if m.matches then
    for k, v in pairs(m.matches) do
      total = total + 1
      if matches(v, msg[k]) then hit = hit + 1 else ok = false end
    end
  end
  return ok, hit, total
end

-- --- loading -------------------------------------------------------------------

local STUB_KEYS = {id = true, service = true, method = true, priority = true, headers = true,
                   input = true, inputs = true, options = true, output = true}
local INPUT_KEYS = {equals = true, contains = true, matches = true, ignoreArrayOrder = true}
local OUTPUT_KEYS = {data = true, stream = true, error = true, code = true, details = true,
                     delay = true, headers = true, trailers = true, lua = true}

local function check_keys(t, allowed, what, where)
  if type(t) ~= "table" then error(where .. ": " .. what .. " must be a mapping", 0) end
  for k in pairs(t) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      sort(names)
      error(("%s: unknown key '%s' in %s (keys: %s)"):format(where, tostring(k), what,
            concat(names, ", ")), 0)
    end
  end
end

-- Regex strings in the shape of the request -> compiled regexes, with the
-- keys made proto names (shape may be nil for headers).
local function compile_matches(t, msg, where)
  if type(t) == "string" then
    local re, err = core.regex(t)
    if not re then error(("%s: bad regular expression '%s': %s"):format(where, t, err), 0) end
    return re
  end
  if type(t) ~= "table" then error(where .. ": a regular expression (string) expected", 0) end
  local s = msg and shape_of(msg)
  local out = {}
  for k, v in pairs(t) do
    local f = s and type(k) == "string" and s.by[k]
    if s and not f then error(("%s: message %s has no field '%s'"):format(where, msg, tostring(k)), 0) end
    local name = f and f.name or k
    local sub = f and f.type == "message" and not f.map and f.message or nil
    out[name] = compile_matches(v, sub, where .. "." .. tostring(name))
  end
  return out
end

-- A stub's `input` (or one element of `inputs`) for messages of type msg.
local function compile_input(t, msg, where)
  check_keys(t, INPUT_KEYS, "input", where)
  local m = {unordered = t.ignoreArrayOrder == true, weight = 0}
  if t.equals ~= nil then
    m.equals = to_lua(t.equals, msg, where .. ": equals")
    m.weight = m.weight + 3 * leaves(m.equals)
  end
  if t.contains ~= nil then
    m.contains = to_lua(t.contains, msg, where .. ": contains")
    m.weight = m.weight + 2 * leaves(m.contains)
  end
  if t.matches ~= nil then
    m.matches = compile_matches(t.matches, msg, where .. ": matches")
    m.weight = m.weight + leaves(m.matches)
  end
  return m
end

-- Header matchers: the same three, on metadata (names lower case).
local function compile_headers(t, where)
  check_keys(t, INPUT_KEYS, "headers", where)
  local function lower(x, what)
    if x == nil then return nil end
    if type(x) ~= "table" then error(where .. ": headers." .. what .. " must be a mapping", 0) end
    local out = {}
    for k, v in pairs(x) do out[tostring(k):lower()] = v end
    return out
  end
  local m = {weight = 0}
  m.equals = lower(t.equals, "equals")
  m.contains = lower(t.contains, "contains")
  if t.matches ~= nil then m.matches = compile_matches(lower(t.matches, "matches"), nil, where .. ": headers.matches") end
  for _, k in ipairs {"equals", "contains"} do
    for name, v in pairs(m[k] or {}) do
      if type(v) ~= "string" then
        m[k][name] = tostring(v)
      end
    end
  end
  m.weight = 3 * leaves(m.equals or {}) + 2 * leaves(m.contains or {}) + leaves(m.matches or {})
  return m
end

local CODES -- name -> number, from moonwire.status, at first use

local function code_of(v, where)
  if v == nil then return nil end
  if mtype(v) == "integer" and v >= 0 and v <= 16 then return v end
  if type(v) == "string" then
    CODES = CODES or require("moonwire.status").codes
    local n = CODES[v:upper()]
    if n then return n end
  end
  error(where .. ": code must be a gRPC status code (0-16 or a name like NOT_FOUND), got " ..
        tostring(v), 0)
end

-- `output.lua`: an expression or a chunk, run per call with req (the
-- request; for client streams the last), reqs (every request message),
-- ctx, calls (this stub's use number, counted across workers), state (a
-- table the stub keeps between calls, per worker) and mw.
local function compile_lua(src, where)
  if type(src) ~= "string" then error(where .. ": output.lua must be a string of Lua", 0) end
  local head = "local req, reqs, ctx, calls, state, mw = ...; "
  local fn = load(head .. "return " .. src, "=" .. where, "t")
  if not fn then
    local err
    fn, err = load(head .. src, "=" .. where, "t")
    if not fn then error(err, 0) end
  end
  return fn
end

local function compile_output(o, msg, where)
  check_keys(o, OUTPUT_KEYS, "output", where)
  local out = {}
  if o.data ~= nil then out.data = to_lua(o.data, msg, where .. ": output.data") end
  if o.stream ~= nil then
    if type(o.stream) ~= "table" then error(where .. ": output.stream must be a list", 0) end
    out.stream = {}
    for i, d in ipairs(o.stream) do
      out.stream[i] = to_lua(d, msg, ("%s: output.stream[%d]"):format(where, i))
    end
  end
  if o.error ~= nil and type(o.error) ~= "string" then
    error(where .. ": output.error must be a string (the status message)", 0)
  end
  out.code = code_of(o.code, where .. ": output.code")
  if o.error ~= nil and (out.code == nil or out.code == 0) then out.code = 2 end -- UNKNOWN
  out.message = o.error
  if o.details ~= nil then
    if type(o.details) ~= "table" then error(where .. ": output.details must be a list", 0) end
    out.details = {}
    for i, d in ipairs(o.details) do
      local w = ("%s: output.details[%d]"):format(where, i)
      if type(d) ~= "table" or type(d.type or d["@type"]) ~= "string" then
        error(w .. ": a detail needs its type (type: type.googleapis.com/google.rpc.ErrorInfo)", 0)
      end
      local url = d.type or d["@type"]
      local fields = {}
      for k, v in pairs(d) do if k ~= "type" and k ~= "@type" then fields[k] = v end end
      local name = url:match "/([^/]+)$" or url
      local detail = to_lua(fields, name, w)
      detail["@type"] = url:find "/" and url or "type.googleapis.com/" .. url
      out.details[i] = detail
    end
  end
  if o.delay ~= nil then
    local ok, d = pcall(require("moonwire").duration, o.delay)
    if not ok then error(where .. ": output.delay: " .. tostring(d), 0) end
    out.delay = d
  end
  for _, k in ipairs {"headers", "trailers"} do
    if o[k] ~= nil then
      if type(o[k]) ~= "table" then error(where .. ": output." .. k .. " must be a mapping", 0) end
      local list = {}
      for name, v in pairs(o[k]) do list[#list + 1] = {tostring(name):lower(), tostring(v)} end
      sort(list, function(a, b) return a[1] < b[1] end)
      out[k] = list
    end
  end
  if o.lua ~= nil then out.lua = compile_lua(o.lua, where .. ": output.lua") end
  if not (out.data or out.stream or out.code or out.lua) then
    error(where .. ": output needs data, stream, error/code or lua", 0)
  end
  -- A reply of data alone takes the short way (handler's answer).
  out.plain = out.data and not (out.stream or out.code or out.lua or out.delay or out.headers
                                or out.trailers) or nil
  return out
end

-- The method of a stub's service and method names (the service in full or
-- by its last component): path, index, kind; or an error naming what exists.
local function resolve(methods, services, svc, name, where)
  local full
  for _, s in ipairs(services) do
    if s == svc or s:match("([^.]+)$") == svc then
      if full and full ~= s then
        error(("%s: service '%s' is ambiguous (%s, %s): give its full name"):format(where, svc, full, s), 0)
      end
      full = s
    end
  end
  if not full then
    error(("%s: no service '%s' in the loaded .proto files (services: %s)")
      :format(where, svc, concat(services, ", ")), 0)
  end
  local names, index, kinds = methods(full)
  if not index[name] then
    error(("%s: %s has no method '%s' (methods: %s)"):format(where, full, name, concat(names, ", ")), 0)
  end
  return "/" .. full .. "/" .. name, index[name], kinds[name]
end

local ORDER = 0 -- load order, the last tie-break

--- Compiles one stub table (the v3 format) for the schema: the stub, or an
-- error raised as "where: what". methods(service) and services are the
-- schema's (core.methods, core.reflect_services).
function M.compile(t, where, methods, services)
  check_keys(t, STUB_KEYS, "a stub", where)
  if type(t.service) ~= "string" or type(t.method) ~= "string" then
    error(where .. ": a stub needs service and method", 0)
  end
  local path, index, kind = resolve(methods, services, t.service, t.method, where)
  local input_type, output_type = core.method_types(index)
  local st = {path = path, index = index, kind = kind, where = where,
              id = t.id ~= nil and tostring(t.id) or nil, priority = 0, times = 0,
              state = {}}
  if t.priority ~= nil then
    if mtype(t.priority) ~= "integer" then error(where .. ": priority must be an integer", 0) end
    st.priority = t.priority
  end
  if t.options ~= nil then
    check_keys(t.options, {times = true}, "options", where)
    local n = t.options.times
    if n ~= nil and (mtype(n) ~= "integer" or n < 0) then
      error(where .. ": options.times must be a whole number (0: unlimited)", 0)
    end
    st.times = n or 0
  end
  if t.input ~= nil and t.inputs ~= nil then
    error(where .. ": give input (one message) or inputs (a client stream's), not both", 0)
  end
  st.weight = 0
  if t.input ~= nil then
    st.input = compile_input(t.input, input_type, where .. ": input")
    st.weight = st.input.weight
  elseif t.inputs ~= nil then
    if type(t.inputs) ~= "table" or not is_array(t.inputs) or #t.inputs == 0 then
      error(where .. ": inputs must be a non-empty list", 0)
    end
    st.inputs = {}
    for i, x in ipairs(t.inputs) do
      st.inputs[i] = compile_input(x, input_type, ("%s: inputs[%d]"):format(where, i))
      st.weight = st.weight + st.inputs[i].weight
    end
  end
  if t.headers ~= nil then
    st.headers = compile_headers(t.headers, where .. ": headers")
    st.weight = st.weight + st.headers.weight
  end
  if t.output == nil then error(where .. ": a stub needs output", 0) end
  st.output = compile_output(t.output, output_type, where)
  st.any = not (st.input or st.inputs or st.headers) or nil
  ORDER = ORDER + 1
  st.order = ORDER
  st.key = st.id or ("%s#%d@%d"):format(where, ORDER, core.generation and core.generation() or 0)
  return st
end

local function better(a, b)
  if a.weight ~= b.weight then return a.weight > b.weight end
  if a.priority ~= b.priority then return a.priority > b.priority end
  return a.order < b.order
end

-- Past this many stubs for one method, they are also bucketed by the
-- value of one `equals` field (below it a scan is as cheap).
local BUCKET_MIN = 8

-- A method's stubs (sorted, best first) bucketed by the request field
-- that most of them compare with `equals` against a scalar: l.key is
-- that field, l.buckets[value] the stubs that want that value, l.rest
-- those that do not compare it (each best first). A call then looks only
-- at its value's bucket and the rest, merged by rank.
local function bucket(l)
  if #l < BUCKET_MIN then return end
  local votes, best, most = {}, nil, 1
  for _, st in ipairs(l) do
    for k, v in pairs(st.input and st.input.equals or {}) do
      if type(v) ~= "table" then
        votes[k] = (votes[k] or 0) + 1
        if votes[k] > most or (votes[k] == most and best and k < best) then best, most = k, votes[k] end
      end
    end
  end
  if not best then return end
  local buckets, rest = {}, {}
  for _, st in ipairs(l) do
    local v = st.input and st.input.equals and st.input.equals[best]
    if v ~= nil and type(v) ~= "table" and v == v then
      local b = buckets[v]
      if not b then b = {}; buckets[v] = b end
      b[#b + 1] = st
    else
      rest[#rest + 1] = st
    end
  end
  l.key, l.buckets, l.rest = best, buckets, rest
end

--- An index of compiled stubs: path -> stubs, best first (and bucketed,
-- see bucket).
function M.index(list)
  local idx = {}
  for _, st in ipairs(list) do
    local l = idx[st.path]
    if not l then l = {}; idx[st.path] = l end
    l[#l + 1] = st
  end
  for _, l in pairs(idx) do
    sort(l, better)
    bucket(l)
    for _, st in ipairs(l) do if st.headers then l.headers = true end end
  end
  return idx
end

-- The stubs of one file: a stub or a list of them.
local function load_file(path, methods, services, out)
  local value, where = core.load_yaml(path)
  if type(value) ~= "table" then error(path .. ": a stub or a list of stubs expected", 0) end
  local list = is_array(value) and value or {value}
  for i, t in ipairs(list) do
    local line = where and where[t]
    local w = ("%s: stub %d"):format(line or path, i)
    out[#out + 1] = M.compile(t, w, methods, services)
  end
end

-- --- answering -----------------------------------------------------------------

-- Whether stub st matches the request messages msgs (one for unary and
-- server streams) and the metadata md; with its closeness (matched
-- entries / entries) for the error when none does.
local function stub_matches(st, msgs, md)
  if st.any then return true, 1 end -- no matcher at all: the common catch-all
  local ok, hit, total = true, 0, 0
  if st.headers then
    local o, h, n = match_one(st.headers, md or {})
    ok, hit, total = ok and o, hit + h, total + n
  end
  if st.input then
    for _, m in ipairs(msgs) do
      local o, h, n = match_one(st.input, m)
      ok, hit, total = ok and o, hit + h, total + n
    end
    if #msgs == 0 then ok = false end
  elseif st.inputs then
    if #st.inputs == 1 then
      for _, m in ipairs(msgs) do
        local o, h, n = match_one(st.inputs[1], m)
        ok, hit, total = ok and o, hit + h, total + n
      end
    else
      if #msgs ~= #st.inputs then ok = false end
      for i, m in ipairs(st.inputs) do
        local o, h, n = match_one(m, msgs[i] or {})
        ok, hit, total = ok and o, hit + h, total + n
      end
    end
  end
  return ok, total == 0 and 1 or hit / total
end

local function unimplemented(path, list, msgs, md)
  local mw = require "moonwire"
  if not list or #list == 0 then
    mw.fail(mw.UNIMPLEMENTED, ("%s has no handler and no stub"):format(path))
  end
  local near = {}
  for _, st in ipairs(list) do
    local _, closeness = stub_matches(st, msgs, md)
    near[#near + 1] = {st = st, c = closeness}
  end
  sort(near, function(a, b)
    if a.c ~= b.c then return a.c > b.c end
    return better(a.st, b.st)
  end)
  local names = {}
  for i = 1, math.min(3, #near) do
    local st = near[i].st
    names[i] = ("%s (%d%% of its matchers%s)"):format(st.id or st.where, math.floor(near[i].c * 100 + 0.5),
      st.times > 0 and core.stub_used(st.key) >= st.times and ", used up" or "")
  end
  mw.fail(mw.UNIMPLEMENTED, ("no stub of %s matches the request; closest: %s")
    :format(path, concat(names, "; ")))
end

-- The best stub of list for msgs and md that has uses left, and its use
-- number; nil when none.
-- st if it matches and has uses left: st, its use number.
local function try(st, msgs, md)
  if stub_matches(st, msgs, md) then
    if st.times > 0 or st.output.lua then
      local ok, n = core.stub_take(st.key, st.times)
      if ok then return st, n end
    else
      return st, 0
    end
  end
  return nil
end

local function select(list, msgs, md)
  if not list then return nil end
  local key = list.key
  if key and #msgs == 1 then
    -- The bucket of the request's value and the rest, merged by rank: the
    -- same order as the whole list, without the stubs that cannot match.
    local v = msgs[1][key]
    local a, b = v ~= nil and list.buckets[v] or {}, list.rest
    local i, j = 1, 1
    while true do
      local x, y = a[i], b[j]
      if not x and not y then return nil end
      local st
      if x and (not y or better(x, y)) then st, i = x, i + 1 else st, j = y, j + 1 end
      local hit, n = try(st, msgs, md)
      if hit then return hit, n end
    end
  end
  for _, st in ipairs(list) do
    local hit, n = try(st, msgs, md)
    if hit then return hit, n end
  end
  return nil
end

-- The messages a stub answers with: {data} or output.stream, or what its
-- Lua returned (a table: one message; an array, for a stream: several).
local function replies(st, n, req, reqs, ctx, streaming)
  local o = st.output
  if o.lua then
    local r = o.lua(req, reqs, ctx, n, st.state, require "moonwire")
    -- lua: "function(req, ctx) ... end" is called like a handler
    if type(r) == "function" then r = r(req, ctx) end
    if r == nil then return {} end
    if type(r) ~= "table" then
      error(("%s: output.lua returned a %s, not a message"):format(st.where, type(r)), 0)
    end
    if streaming and is_array(r) and next(r) ~= nil then return r end
    return {r}
  end
  if o.stream then return o.stream end
  if o.data then return {o.data} end
  return {}
end

local function set_metadata(st, ctx)
  for _, h in ipairs(st.output.headers or {}) do ctx:set_header(h[1], h[2]) end
  for _, h in ipairs(st.output.trailers or {}) do ctx:set_trailer(h[1], h[2]) end
end

local function finish_error(st)
  local o = st.output
  if o.code and o.code ~= 0 then
    local mw = require "moonwire"
    mw.fail(o.code, o.message or "", o.details)
  end
end

-- A message every field of which is filled from its type (--stub-all):
-- strings hold their field's name, numbers 1, booleans true, enums their
-- first value, repeated fields and maps one element, messages recurse
-- (a type already being filled, and google.protobuf.Any, are left out).
local function default_message(name, seen)
  seen = seen or {}
  local s = shape_of(name)
  local out, oneofs = {}, {}
  seen[name] = true
  local function example(f)
    local t = f.type
    if INT[t] then return 1
    elseif t == "float" or t == "double" then return 1.5
    elseif t == "bool" then return true
    elseif t == "string" or t == "bytes" then return f.name
    elseif t == "enum" then return f.enum[1]
    elseif t == "message" then
      if seen[f.message] or f.message == "google.protobuf.Any" then return nil end
      return default_message(f.message, seen)
    end
  end
  for _, f in ipairs(s.fields) do
    if not (f.oneof and oneofs[f.oneof]) then
      local v
      if f.map then
        local k, x = example(f.key), example(f.value)
        if k ~= nil and x ~= nil then v = {[k] = x} end
      elseif f.repeated then
        local x = example(f)
        if x ~= nil then v = {x} end
      else
        v = example(f)
      end
      if v ~= nil then
        out[f.name] = v
        if f.oneof then oneofs[f.oneof] = true end
      end
    end
  end
  seen[name] = nil
  return out
end
M.default_message = default_message

local json_encode = core.json_encode

-- One call into the admin API's history: the request (or, for client and
-- bidi streams, every request so far) as JSON, the stub that answered.
local function record(path, st, req, code)
  local svc, method = path:match "^/([^/]+)/(.+)$"
  local ok, text = pcall(json_encode, req)
  core.stub_record(svc, method, st and (st.id or st.where) or nil,
                   ok and text or nil, code or (st and st.output.code) or 0)
end

-- The handler of one method: answers from stubs(path) (best first), else
-- the default message (stub_all), else UNIMPLEMENTED with the closest
-- stubs. With history on, every call is recorded.
-- Request metadata a forwarded call carries on: what the client sent, but
-- for what gRPC itself sets.
local function forwarded_metadata(md)
  local out
  for k, v in pairs(md or {}) do
    if not (k:find "^grpc%-" or k:find "^:" or k == "user-agent" or k == "te" or
            k == "content-type" or k == "traceparent" or k == "tracestate") then
      out = out or {}
      out[k] = v
    end
  end
  return out
end

-- A text of v that is the same in every worker's state (keys sorted;
-- json_encode follows the table's own order, which differs between
-- states): the key that records a request once.
local function canonical(v)
  if type(v) ~= "table" then return type(v) == "string" and ("%q"):format(v) or tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = tostring(k) .. "=" .. canonical(v[k]) end
  return "{" .. concat(parts, ",") .. "}"
end

-- Writes stubs sts (the stubs of one call seen upstream) as one stub file,
-- once per distinct request sequence key (the check is process-wide,
-- through the use counters).
local function save_stubs(path, sts, key)
  local svc, method = path:match "^/([^/]+)/(.+)$"
  local first = core.stub_take("record:" .. path .. " " .. key, 1)
  if not first then return end
  local _, seq = core.stub_take("record-seq:" .. path, 0)
  local text = core.json_encode(core.json_array(sts))
  local ok, e = core.stub_save(("%s.%s.%d.stubs.json"):format(svc, method, seq), text .. "\n")
  if not ok then require("moonwire").log.warn("--record: cannot write a stub", {error = e}) end
end

-- --record: a unary or server- or client-streaming call seen upstream as
-- a stub.
local function save_recording(path, input_type, output_type, kind, reqs, replies, err)
  local svc, method = path:match "^/([^/]+)/(.+)$"
  local st = {service = svc, method = method, output = {}}
  if kind == "client_stream" then
    st.inputs = core.json_array({})
    for i, r in ipairs(reqs) do st.inputs[i] = {equals = to_json(r, input_type)} end
  else
    st.input = {equals = to_json(reqs[1], input_type)}
  end
  if kind == "server_stream" then
    st.output.stream = core.json_array({})
    for i, r in ipairs(replies) do st.output.stream[i] = to_json(r, output_type) end
  elseif replies[1] then
    st.output.data = to_json(replies[1], output_type)
  end
  if err then
    st.output.error = err.message or ""
    st.output.code = err.code
  end
  save_stubs(path, {st}, canonical(st.inputs or st.input))
end

-- --record of a bidi call: one stub per request message, whose `inputs`
-- are the requests up to it and whose `output.stream` the replies that
-- came after it (those before the first request go with the first), the
-- status on the last. The bidi stub handler answers each message with the
-- stub that matches every message so far, so a replay sends the same
-- replies at the same turns, and a client that waits for each reply
-- before its next request is answered as the upstream answered it.
local function save_bidi(path, input_type, output_type, steps, err)
  if #steps == 0 then return end
  local svc, method = path:match "^/([^/]+)/(.+)$"
  local sts, inputs = {}, {}
  for i, step in ipairs(steps) do
    inputs[i] = {equals = to_json(step.req, input_type)}
    local st = {service = svc, method = method, inputs = core.json_array({}),
                output = {stream = core.json_array({})}}
    for j = 1, i do st.inputs[j] = inputs[j] end
    for j, r in ipairs(step.replies) do st.output.stream[j] = to_json(r, output_type) end
    sts[i] = st
  end
  if err then
    sts[#sts].output.error = err.message or ""
    sts[#sts].output.code = err.code
  end
  save_stubs(path, sts, canonical(inputs))
end

-- Response metadata of the upstream handed on, but for what gRPC sets.
local function pass_metadata(md, ctx, trailers)
  for k, v in pairs(md or {}) do
    if not (k:find "^grpc%-" or k:find "^:" or k == "content-type" or k == "te") then
      if trailers then ctx:set_trailer(k, v) else ctx:set_header(k, v) end
    end
  end
end

-- Forwards one call upstream, relays the replies and the status, and
-- records it when asked. A bidi call is relayed both ways as messages
-- arrive (s:relay), with the upstream's headers and trailers.
local function forwarder(path, kind, input_type, output_type, upstream, recording)
  local mw = require "moonwire"
  local ch
  local function channel()
    ch = ch or mw.client(upstream.address, upstream.tls and {tls = upstream.tls} or nil)
    return ch
  end
  local function opts(ctx)
    local md = forwarded_metadata(ctx.metadata)
    return md and {metadata = md} or nil
  end
  local function fail(err)
    mw.fail(err) -- the upstream's status, details and all
  end
  if kind == "unary" then
    return function(reqs, ctx)
      local res, err = channel():call(path, reqs[1], opts(ctx))
      if recording then save_recording(path, input_type, output_type, kind, reqs, {res}, err) end
      if not res then fail(err) end
      return res
    end
  elseif kind == "server_stream" then
    return function(reqs, ctx, stream)
      local s, err = channel():call(path, reqs[1], opts(ctx))
      local got = {}
      if s then
        while true do
          local msg, e = s:recv()
          if msg == nil then err = e break end
          got[#got + 1] = msg
          stream:send(msg)
        end
      end
      if recording then save_recording(path, input_type, output_type, kind, reqs, got, err) end
      if err then fail(err) end
    end
  elseif kind == "client_stream" then
    return function(reqs, ctx)
      local s, err = channel():stream(path, opts(ctx))
      local res
      if s then
        for _, r in ipairs(reqs) do s:send(r) end
        s:close_send()
        res, err = s:recv()
      end
      if recording then save_recording(path, input_type, output_type, kind, reqs, {res}, err) end
      if res == nil then fail(err) end
      return res
    end
  end
  -- pre: the requests the stub engine read before it chose to forward.
  return function(stream, ctx, pre)
    local s, err = channel():stream(path, opts(ctx))
    if not s then fail(err) end
    local steps, early = recording and {} or nil, {}
    local headers_sent, trailers = false, nil
    for _, m in ipairs(pre or {}) do
      if steps then steps[#steps + 1] = {req = m, replies = {}} end
      s:send(m)
    end
    while true do
      local side, msg, e, tr = s:relay(stream)
      if side == "in" then
        if msg == nil then
          s:close_send()
        else
          if steps then steps[#steps + 1] = {req = msg, replies = early} early = {} end
          s:send(msg) -- false once the upstream ended: its status comes next
        end
      elseif msg == nil then
        err, trailers = e, tr
        break
      else
        if not headers_sent then
          headers_sent = true
          pass_metadata(s:headers(), ctx, false)
        end
        if steps then
          local cur = steps[#steps]
          if cur then cur.replies[#cur.replies + 1] = msg else early[#early + 1] = msg end
        end
        stream:send(msg)
      end
    end
    if not headers_sent then pass_metadata(s:headers(), ctx, false) end
    pass_metadata(trailers, ctx, true)
    if steps then save_bidi(path, input_type, output_type, steps, err) end
    if err then fail(err) end
  end
end

-- A call handed to the upstream, in the admin API's history.
local function record_upstream(path, req)
  local ok, text = pcall(json_encode, req)
  core.stub_record(path:match "^/([^/]+)/", path:match "[^/]+$", "upstream", ok and text or nil, 0)
end

local function handler(path, kind, output_type, stubs, stub_all, history, forward)
  local mw = require "moonwire"
  local sleep = mw.sleep
  local fallback
  if stub_all then fallback = {output = {data = default_message(output_type)}, state = {}} end

  local function choose(msgs, ctx)
    local list = stubs(path)
    local md = list and list.headers and ctx.metadata or nil
    local st, n = select(list, msgs, md)
    if not st and fallback then st, n = fallback, 0 end
    return st, n, list
  end

  -- The stub for msgs, with its use number; raises UNIMPLEMENTED if none.
  -- With an upstream and no stub: nil, and the caller forwards. The
  -- metadata table is built only when some stub matches on headers (it
  -- costs a table per call).
  local function pick(msgs, ctx, req)
    local list = stubs(path)
    local md = list and list.headers and ctx.metadata or nil
    local st, n = select(list, msgs, md)
    if not st and forward then
      if history then record_upstream(path, req) end
      return nil
    end
    if not st and fallback then st, n = fallback, 0 end
    if history then record(path, st, req, not st and 12 or nil) end
    if st then return st, n end
    unimplemented(path, list, msgs, ctx.metadata)
  end

  -- Sends st's replies on stream (streaming kinds), delay before each.
  local function send_all(st, n, req, reqs, stream, ctx)
    set_metadata(st, ctx)
    for _, r in ipairs(replies(st, n, req, reqs, ctx, true)) do
      if st.output.delay then sleep(st.output.delay) end
      stream:send(r)
    end
    finish_error(st)
  end

  -- A unary reply from st.
  local function answer(st, n, req, reqs, ctx)
    local o = st.output
    if o.plain then return o.data end -- data alone: nothing else to do
    set_metadata(st, ctx)
    if st.output.delay then sleep(st.output.delay) end
    local r = replies(st, n, req, reqs, ctx, false)
    finish_error(st)
    return r[1] or {}
  end

  if kind == "unary" then
    return function(req, ctx)
      local reqs = {req}
      local st, n = pick(reqs, ctx, req)
      if not st then return forward(reqs, ctx) end
      return answer(st, n, req, reqs, ctx)
    end
  elseif kind == "server_stream" then
    return function(req, stream, ctx)
      local reqs = {req}
      local st, n = pick(reqs, ctx, req)
      if not st then return forward(reqs, ctx, stream) end
      send_all(st, n, req, reqs, stream, ctx)
    end
  elseif kind == "client_stream" then
    return function(stream, ctx)
      local reqs = {}
      for m in stream:iter() do reqs[#reqs + 1] = m end
      local st, n = pick(reqs, ctx, reqs)
      if not st then return forward(reqs, ctx) end
      return answer(st, n, reqs[#reqs], reqs, ctx)
    end
  end
  -- bidi: each request message is answered on its own, by the stub that
  -- matches it (stubs with `inputs` are matched against every message so
  -- far). With an upstream, a method without stubs is forwarded whole, and
  -- so is a call whose first message no stub matches (that message first).
  return function(stream, ctx)
    if forward then
      local l = stubs(path)
      if not l or #l == 0 then
        if history then record_upstream(path, nil) end
        return forward(stream, ctx, nil)
      end
    end
    local reqs, first = {}, true
    for m in stream:iter() do
      reqs[#reqs + 1] = m
      local st, n, list = choose({m}, ctx)
      if not st or st == fallback then
        local all, k = select(list, reqs, list and list.headers and ctx.metadata or nil)
        if all then st, n = all, k end
      end
      if forward and first and (not st or st == fallback) then
        if history then record_upstream(path, m) end
        return forward(stream, ctx, reqs)
      end
      if history then record(path, st, m, not st and 12 or nil) end
      if not st then unimplemented(path, list, {m}, ctx.metadata) end
      if first then set_metadata(st, ctx) first = false end
      for _, r in ipairs(replies(st, n, m, reqs, ctx, true)) do
        if st.output.delay then sleep(st.output.delay) end
        stream:send(r)
      end
      finish_error(st)
    end
  end
end
M.handler = handler

-- Stubs added through the admin API (shared by every worker in C): the
-- file stubs and the added ones, indexed again whenever the registry's
-- version moves. A stub the schema refuses is logged once and left out.
local file_list, index, seen = {}, {}, 0
local schema_methods, schema_services

local function refresh()
  local v = core.stub_version()
  if v == seen then return end
  local added, version = core.stub_added()
  local list = {}
  for i, st in ipairs(file_list) do list[i] = st end
  for _, a in ipairs(added) do
    local where = "stub " .. a.id
    local ok, st = pcall(function()
      local t, err = core.json_decode(a.json)
      if type(t) ~= "table" then error(where .. ": " .. tostring(err or "not an object"), 0) end
      t.id = nil
      local c = M.compile(t, where, schema_methods, schema_services)
      c.id, c.key = a.id, "added:" .. a.id .. "#" .. a.serial
      return c
    end)
    if ok then
      list[#list + 1] = st
    else
      require("moonwire").log.warn("stub added through the admin API left out", {error = tostring(st)})
    end
  end
  index, seen = M.index(list), version
end

--- Called by moonwire.service once the scripts' handlers are bound:
-- loads the stub files (core.stub_files) and, in stub mode (a stub file,
-- a stubs/ folder, or serve --stub-all), binds the methods that have no
-- handler: those with stubs, or, with --stub-all or the admin listener
-- on (stubs may be added at run time), every one. bound[index] is true for
-- methods with a handler; wrap(service, path, kind, fn) composes the
-- interceptors. Problems (a bad stub file) are appended to problems.
function M.bind(bind, methods, bound, wrap, problems)
  local files, has_dir = {}, false
  if core.stub_files then files, has_dir = core.stub_files() end
  local stub_all = core.stub_all and core.stub_all() or false
  local upstream, recording
  if core.stub_upstream then upstream, recording = core.stub_upstream() end
  if #files == 0 and not has_dir and not stub_all and not upstream then return end
  local admin = core.stub_admin and core.stub_admin() or false
  local services = core.reflect_services()
  schema_methods, schema_services = methods, services
  local list = {}
  for _, path in ipairs(files) do
    local ok, err = pcall(load_file, path, methods, services, list)
    if not ok then problems[#problems + 1] = tostring(err) end
  end
  file_list, index, seen = list, M.index(list), 0
  local stubs = function(path) return index[path] end
  if admin then
    refresh()
    stubs = function(path)
      refresh()
      return index[path]
    end
  end
  for _, svc in ipairs(services) do
    local names, idx, kinds = methods(svc)
    for _, name in ipairs(names) do
      local i, path = idx[name], "/" .. svc .. "/" .. name
      if not bound[i] and (index[path] or stub_all or admin or upstream) and not svc:match "^grpc%." then
        local input_type, output_type = core.method_types(i)
        local forward = upstream and forwarder(path, kinds[name], input_type, output_type,
                                               upstream, recording)
        local fn = handler(path, kinds[name], output_type, stubs, stub_all, admin, forward)
        bind(i, wrap(svc, path, kinds[name], fn), true)
      end
    end
  end
end

return M
