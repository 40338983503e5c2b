-- Specs for mw.json (runtime/lua/l_json.c): strict decoding with positions,
-- limits, and encoding back.
local json = require "moonwire.json"

describe("mw.json.decode", function()
  it("reads every kind of value", function()
    local v = assert(json.decode '{"a": [1, 2.5, -3e2, true, false, null, "x\\u00e9\\ud83d\\ude00"], "b": {}}')
    assert.equal(1, v.a[1]); assert.is_true(math.type(v.a[1]) == "integer")
    assert.equal(2.5, v.a[2]); assert.equal(-300.0, v.a[3]); assert.is_true(math.type(v.a[3]) == "float")
    assert.is_true(v.a[4]); assert.is_false(v.a[5]); assert.equal(json.null, v.a[6])
    assert.equal("x\xc3\xa9\xf0\x9f\x98\x80", v.a[7])
    assert.same({}, v.b)
    assert.equal(9007199254740993, json.decode "9007199254740993")
    assert.is_true(math.type(json.decode "92233720368547758070") == "float")
  end)

  it("refuses what RFC 8259 does not allow, saying where", function()
    local cases = {
      ['{"a":1,}'] = "at byte 7", ["[1,]"] = "at byte 3", ["01"] = "leading zero",
      ["NaN"] = "unexpected", ['"a\tb"'] = "control character", ['"\\x"'] = "invalid escape",
      ['"\\ud800"'] = "lone high surrogate", ['"\\udc00"'] = "lone low surrogate",
      ['{"a":1,"a":2}'] = "duplicate key", ["[1] 2"] = "trailing", ["/*c*/1"] = "unexpected",
      ['"\xff"'] = "invalid UTF-8", ['"\xc0\xaf"'] = "invalid UTF-8", ["1."] = "digit",
      [""] = "unexpected end", ["[1"] = "unterminated array", ["1e999"] = "out of range",
      ["{1:2}"] = "string key", ['"abc'] = "unterminated string",
    }
    for text, want in pairs(cases) do
      local v, err = json.decode(text)
      assert.is_nil(v, text)
      assert.truthy(err:find(want, 1, true), text .. " -> " .. tostring(err))
    end
  end)

  it("bounds depth and size", function()
    assert.truthy(json.decode(("["):rep(64) .. ("]"):rep(64)))
    local v, err = json.decode(("["):rep(65) .. ("]"):rep(65))
    assert.is_nil(v); assert.truthy(err:find "nested too deep")
    assert.truthy(json.decode(("["):rep(100) .. ("]"):rep(100), {max_depth = 100}))
    v, err = json.decode('"' .. ("x"):rep(100) .. '"', {max_bytes = 50})
    assert.is_nil(v); assert.truthy(err:find "over the limit")
    assert.has_error(function() json.decode("1", {max_depth = 0}) end)
  end)
end)

describe("mw.json.encode", function()
  it("writes values back", function()
    assert.equal('[1,2.5,"a\\"b\\n\\u0001",true,null]', json.encode {1, 2.5, 'a"b\n\1', true, json.null})
    assert.equal('{"k":[]}', json.encode {k = json.array {}})
    assert.equal("{}", json.encode {})
    local v = json.decode '{"x":[],"y":{"z":"\xc3\xa9"}}'
    assert.same(v, json.decode(json.encode(v)))
    assert.truthy(json.encode(v):find('"x":[]', 1, true))
  end)

  it("refuses what JSON cannot hold", function()
    for _, bad in ipairs {0 / 0, math.huge, print, {1, x = 2}, {[2] = 1}, "\xff"} do
      local s, err = json.encode(bad)
      assert.is_nil(s); assert.truthy(err:find "cannot encode")
    end
    local t = {}; t.t = t
    local s, err = json.encode(t)
    assert.is_nil(s); assert.truthy(err:find "too deep")
  end)
end)
