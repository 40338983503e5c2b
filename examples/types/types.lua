-- types.Types: Echo returns the request as it came; Transform changes every
-- field in the way README.md documents. Together they exercise every proto3
-- mapping of Moonwire's codec (see types.proto).
local mw = require "moonwire"

local Types = mw.service "types.Types"

function Types.Echo(req, ctx)
  return req
end

-- Scalars ------------------------------------------------------------------

local INT32_MIN, INT32_MAX, UINT32_MAX = -2147483648, 2147483647, 4294967295

local function negate(x) return -x end
local function invert(b) return not b end

-- int32, sint32, sfixed32: +1, the maximum wraps to the minimum.
local function inc_i32(v)
  if v == INT32_MAX then return INT32_MIN end
  return v + 1
end

-- uint32, fixed32: +1, the maximum wraps to 0.
local function inc_u32(v)
  if v == UINT32_MAX then return 0 end
  return v + 1
end

-- int64, sint64, sfixed64: Lua integers wrap like two's complement, so
-- math.maxinteger + 1 == math.mininteger.
local function inc_i64(v)
  return v + 1
end

-- uint64, fixed64: a value above math.maxinteger arrives as its decimal
-- string, and a decimal string is accepted on the way out.
local function inc_decimal(s)
  local i = #s
  while i >= 1 do
    local d = s:byte(i) - 48
    if d < 9 then
      return s:sub(1, i - 1) .. string.char(48 + d + 1) .. string.rep("0", #s - i)
    end
    i = i - 1
  end
  return "1" .. string.rep("0", #s)
end

local function inc_u64(v)
  if math.type(v) == "integer" then
    if v == math.maxinteger then return "9223372036854775808" end
    return v + 1
  end
  if v == "18446744073709551615" then return 0 end
  return inc_decimal(v)
end

-- ASCII letters upper-cased; every other byte (UTF-8 included) unchanged.
local function upper(s)
  return (s:gsub("%l", string.upper))
end

-- bytes: byte order reversed.
local function reverse_bytes(s)
  return s:reverse()
end

-- Enum: the next value in declaration order, the last wrapping to the first;
-- a number the enum does not know is returned unchanged.
local COLORS = {"COLOR_UNSPECIFIED", "RED", "GREEN", "BLUE", "INFRARED"}
local NEXT_COLOR = {}
for i, name in ipairs(COLORS) do NEXT_COLOR[name] = COLORS[i % #COLORS + 1] end

local function next_color(c)
  return NEXT_COLOR[c] or c
end

-- Containers ---------------------------------------------------------------

local function reversed(fn)
  return function(list)
    local out, n = {}, #list
    for i = 1, n do out[i] = fn(list[n + 1 - i]) end
    return out
  end
end

local function map_values(fn)
  return function(map)
    local out = {}
    for k, v in pairs(map) do out[k] = fn(v) end
    return out
  end
end

-- Applies rules[field] to every field of msg; a field without a rule is a
-- mistake in this file, reported as such.
local function apply(rules, msg, what)
  local out = {}
  for k, v in pairs(msg) do
    local fn = rules[k]
    if not fn then
      mw.fail(mw.INTERNAL, ("types.lua has no Transform rule for %s.%s"):format(what, k))
    end
    out[k] = fn(v)
  end
  return out
end

local inner_rules = {
  id = inc_i32,
  name = upper,
  color = next_color,
}
inner_rules.values = reversed(inc_i32)

local function transform_inner(m)
  return apply(inner_rules, m, "types.Inner")
end
inner_rules.child = transform_inner

local point_rules = {x = inc_i32, y = inc_i32}
local function transform_point(p)
  return apply(point_rules, p, "types.AllTypes.Point")
end

local transform_all -- defined below: an Any may hold an AllTypes

-- Any: an unpacked types.Inner or types.AllTypes is transformed and stays
-- packed with the same type URL; anything else (including a type unknown to
-- the server, which arrives as {["@type"]=, ["@value"]=}) is unchanged.
local function transform_any(a)
  local url = a["@type"]
  local name = url:match("([^/]*)$")
  if a["@value"] ~= nil then return a end
  local body = {}
  for k, v in pairs(a) do
    if k ~= "@type" then body[k] = v end
  end
  local out
  if name == "types.Inner" then
    out = transform_inner(body)
  elseif name == "types.AllTypes" then
    out = transform_all(body)
  else
    return a
  end
  out["@type"] = url
  return out
end

local scalar = {
  double = negate, float = negate,
  int32 = inc_i32, sint32 = inc_i32, sfixed32 = inc_i32,
  uint32 = inc_u32, fixed32 = inc_u32,
  int64 = inc_i64, sint64 = inc_i64, sfixed64 = inc_i64,
  uint64 = inc_u64, fixed64 = inc_u64,
  bool = invert, string = upper, bytes = reverse_bytes,
}

local all_rules = {
  f_enum = next_color, f_inner = transform_inner, f_point = transform_point,
  r_enum = reversed(next_color), r_inner = reversed(transform_inner),
  m_int32 = map_values(upper),
  m_int64 = map_values(inc_i64),
  m_uint32 = map_values(inc_u32),
  m_uint64 = map_values(inc_u64),
  m_sint32 = map_values(inc_i32),
  m_sint64 = map_values(inc_i64),
  m_fixed32 = map_values(inc_u32),
  m_fixed64 = map_values(inc_u64),
  m_sfixed32 = map_values(inc_i32),
  m_sfixed64 = map_values(inc_i64),
  m_bool = map_values(invert),
  m_string = map_values(upper),
  m_inner = map_values(transform_inner),
  m_enum = map_values(next_color),
  m_bytes = map_values(reverse_bytes),
  m_double = map_values(negate),
  m_float = map_values(negate),
  o_int32 = inc_i32, o_int64 = inc_i64, o_uint64 = inc_u64,
  o_double = negate, o_float = negate, o_bool = invert,
  o_string = upper, o_bytes = reverse_bytes, o_enum = next_color,
  f_any = transform_any, r_any = reversed(transform_any),
}
for type_name, fn in pairs(scalar) do
  all_rules["f_" .. type_name] = fn
  all_rules["r_" .. type_name] = reversed(fn)
end

-- The oneof switches member: choice_int = n -> choice_text = "n";
-- choice_text = s -> choice_inner = {name = s};
-- choice_inner = m -> choice_int = m.id. Unset stays unset.
local CHOICES = {choice_int = true, choice_text = true, choice_inner = true}
for k in pairs(CHOICES) do all_rules[k] = function(v) return v end end

function transform_all(msg)
  local out = apply(all_rules, msg, "types.AllTypes")
  if msg.choice_int ~= nil then
    out.choice_int = nil
    out.choice_text = ("%d"):format(msg.choice_int)
  elseif msg.choice_text ~= nil then
    out.choice_text = nil
    out.choice_inner = {name = msg.choice_text}
  elseif msg.choice_inner ~= nil then
    out.choice_inner = nil
    out.choice_int = msg.choice_inner.id
  end
  return out
end

function Types.Transform(req, ctx)
  return transform_all(req)
end

return Types
