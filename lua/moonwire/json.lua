--- moonwire.json: JSON (RFC 8259) to and from Lua values, strict and
-- bounded (runtime/lua/l_json.c).
--
--   local v, err = mw.json.decode(text [, {max_depth = 64, max_bytes = 4194304}])
--   local text, err = mw.json.encode(value [, {max_depth = 64}])
--
-- decode refuses comments, trailing commas, NaN, leading zeros, control
-- characters in strings, invalid UTF-8, lone surrogates and duplicate keys;
-- errors read "json: at byte N: what". Objects become tables, arrays tables
-- marked as arrays (mw.json.array(t) marks one, so {} encodes as []),
-- null mw.json.null. Numbers without fraction or exponent that fit 64 bits
-- are integers. encode refuses NaN and infinity, non-UTF-8 strings, tables
-- mixing array items and keys, and functions or userdata; nil and
-- mw.json.null encode as null.
local core = require "moonwire.core"

return {
  decode = core.json_decode,
  encode = core.json_encode,
  array = core.json_array,
  null = core.json_null,
}
