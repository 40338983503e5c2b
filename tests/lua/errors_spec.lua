-- Specs for lua/moonwire/details.lua, errors.lua and the details of
-- status.lua (mw.fail's third argument, google.rpc.Status both ways).
local mw = require "moonwire"
local d = mw.details

local PREFIX = "type.googleapis.com/google.rpc."

local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return err
end

describe("mw.details", function()
  it("builds every standard detail with its @type", function()
    local built = {
      ErrorInfo = d.ErrorInfo{reason = "R"}, RetryInfo = d.RetryInfo(1),
      DebugInfo = d.DebugInfo("x"), QuotaFailure = d.QuotaFailure{a = "b"},
      PreconditionFailure = d.PreconditionFailure{{type = "T"}},
      BadRequest = d.BadRequest{f = "bad"}, RequestInfo = d.RequestInfo{request_id = "1"},
      ResourceInfo = d.ResourceInfo{resource_name = "n"}, Help = d.Help{url = "u"},
      LocalizedMessage = d.LocalizedMessage("en", "hi"),
    }
    for name, t in pairs(built) do assert.equal(PREFIX .. name, t["@type"]) end
  end)

  it("has convenience forms", function()
    assert.same({seconds = 1, nanos = 500000000}, d.RetryInfo(1.5).retry_delay)
    -- rounding that reaches a whole second carries into seconds
    assert.same({seconds = 1, nanos = 0}, d.RetryInfo(0.9999999999).retry_delay)
    assert.same({seconds = -1, nanos = 0}, d.RetryInfo(-0.9999999999).retry_delay)
    assert.same({seconds = 2}, d.RetryInfo{retry_delay = {seconds = 2}}.retry_delay)
    assert.same({{field = "a", description = "x"}, {field = "b", description = "y"}},
                d.BadRequest{b = "y", a = "x"}.field_violations)
    assert.same({{field = "a", description = "x"}},
                d.BadRequest{{field = "a", description = "x"}}.field_violations)
    assert.same({"one", "two"}, d.DebugInfo{stack_entries = "one\ntwo"}.stack_entries)
    assert.same({{url = "u", description = "d"}}, d.Help{url = "u", description = "d"}.links)
    assert.same({n = "3", ok = "true"}, d.ErrorInfo{metadata = {n = 3, ok = true}}.metadata)
    assert.equal("type.googleapis.com/pkg.Mine", d.any("pkg.Mine", {a = 1})["@type"])
  end)

  it("does not change its argument", function()
    local t = {reason = "R"}
    d.ErrorInfo(t)
    assert.is_nil(t["@type"])
  end)

  it("refuses fields the message lacks", function()
    assert.matches("google.rpc.ErrorInfo has no field 'reasn'", raised(d.ErrorInfo, {reasn = "x"}))
    assert.matches("has no field 'nope'", raised(d.Help, {{nope = 1}}))
    assert.matches("a table expected", raised(d.ResourceInfo, "x"))
  end)
end)

describe("mw.fail with details", function()
  it("raises a status object carrying the details as given", function()
    local details = {d.ErrorInfo{reason = "R"}}
    local err = raised(mw.fail, mw.NOT_FOUND, "gone", details)
    assert.is_true(mw.is_status(err))
    assert.equal(5, err.code)
    assert.equal("R", err.details[1].reason)
    assert.equal(details, err.details)
  end)

  it("refuses details that are not an array of detail tables", function()
    assert.matches("details must be an array of detail tables, got string",
                   raised(mw.fail, 5, "m", "x"))
    assert.matches("found the key 'reason'", raised(mw.fail, 5, "m", {reason = "x"}))
    assert.matches("details%[2%] must be a table", raised(mw.fail, 5, "m", {d.Help{}, 3}))
    assert.matches('details%[1%] has no "@type"', raised(mw.status, 5, "m", {{reason = "x"}}))
  end)

  it("round-trips through google.rpc.Status bytes", function()
    local st = mw.status(mw.ABORTED, "retry", {d.RetryInfo(3), d.BadRequest{x = "bad"},
                                              d.LocalizedMessage("de", "nochmal")})
    local bin = assert(mw.encode_status(st))
    local back = assert(mw.decode_status(bin))
    assert.is_true(mw.is_status(back))
    assert.equal(10, back.code)
    assert.equal("retry", back.message)
    assert.equal(3, back.details[1].retry_delay.seconds)
    assert.equal("x", back.details[2].field_violations[1].field)
    assert.equal("nochmal", back.details[3].message)
  end)

  it("keeps an Any of a type the schema lacks as bytes", function()
    local st = mw.status(5, "m", {{["@type"] = "type.googleapis.com/x.Y", ["@value"] = "\1\2"}})
    local back = assert(mw.decode_status(assert(mw.encode_status(st))))
    assert.same({["@type"] = "type.googleapis.com/x.Y", ["@value"] = "\1\2"}, back.details[1])
  end)

  it("reports what cannot be encoded or decoded", function()
    local _, err = mw.encode_status(mw.status(5, "m", {{["@type"] = "type.googleapis.com/x.Y"}}))
    assert.matches("not in the schema", err)
    local none, derr = mw.decode_status("\255\255\255")
    assert.is_nil(none)
    assert.matches("cannot decode google.rpc.Status", derr)
  end)
end)

describe("mw.errors", function()
  mw.errors {
    SPEC_TAKEN = {code = "ALREADY_EXISTS", message = "name {name} is taken",
                  domain = "spec.example", details = {d.Help{url = "u"}}},
  }

  it("raises a catalogue error by name with its fields", function()
    local err = raised(mw.fail, "SPEC_TAKEN", {name = "ann"}, {d.RequestInfo{request_id = "7"}})
    assert.equal(6, err.code)
    assert.equal("name ann is taken", err.message)
    assert.same({["@type"] = PREFIX .. "ErrorInfo", reason = "SPEC_TAKEN",
                 domain = "spec.example", metadata = {name = "ann"}}, err.details[1])
    assert.equal(PREFIX .. "Help", err.details[2]["@type"])
    assert.equal("7", err.details[3].request_id)
    assert.is_true(mw.is_error(err, "SPEC_TAKEN"))
    assert.is_true(mw.is_error(mw.decode_status(mw.encode_status(err)), "SPEC_TAKEN"))
    assert.is_false(mw.is_error(mw.status(6, "x"), "SPEC_TAKEN"))
  end)

  it("returns it with mw.status", function()
    local st = mw.status("SPEC_TAKEN", {name = "bo"})
    assert.equal("name bo is taken", st.message)
  end)

  it("refuses bad names, codes and uses", function()
    assert.matches("'NOT_FOUND' is a status code name",
                   raised(mw.errors, {NOT_FOUND = {code = 5, message = "x"}}))
    assert.matches("unknown status code 'NOPE'",
                   raised(mw.errors, {SPEC_X = {code = "NOPE", message = "x"}}))
    assert.matches("not OK", raised(mw.errors, {SPEC_X = {code = 0, message = "x"}}))
    assert.matches("unknown key 'mesage'",
                   raised(mw.errors, {SPEC_X = {code = 5, mesage = "x"}}))
    assert.matches("'SPEC_TAKEN' is defined twice",
                   raised(mw.errors, {SPEC_TAKEN = {code = 5, message = "x"}}))
    assert.matches("neither a status code nor an error of the catalogue",
                   raised(mw.fail, "SPEC_NOPE", {}))
    assert.matches("needs the field 'name'", raised(mw.fail, "SPEC_TAKEN", {}))
    assert.is_nil(require("moonwire.errors").lookup("SPEC_X")) -- a bad entry adds none
  end)
end)

describe("mw.load_yaml", function()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return dir .. "/" .. name
  end

  it("maps YAML to tables", function()
    local p = write("a.yaml", "a: 1\nb: [x, 'true', true, 1.5]\nc: ~\nd: {e: f}\n")
    local t = mw.load_yaml(p)
    assert.same({a = 1, b = {"x", "true", true, 1.5}, d = {e = "f"}}, t)
    assert.equal("integer", math.type(t.a))
  end)

  it("names the file and line of errors", function()
    assert.matches("b.yaml:3: ", raised(mw.load_yaml, write("b.yaml", "a: 1\nb: 2\na: 3\n")))
    assert.matches("duplicate key 'a'", raised(mw.load_yaml, dir .. "/b.yaml"))
    assert.matches("c.yaml:2: aliases", raised(mw.load_yaml, write("c.yaml", "a: &x 1\nb: *x\n")))
    assert.matches("c.yaml:%d+: ", raised(mw.load_yaml, write("c.yaml", "a: [1\n")))
    assert.matches("No such file", raised(mw.load_yaml, dir .. "/none.yaml"))
  end)

  it("feeds the catalogue, with lines in its messages", function()
    local p = write("errors.yaml", "SPEC_Y:\n  code: NOT_FOUND\n  message: m\nSPEC_Z:\n  code: BAD\n  message: m\n")
    assert.matches("errors.yaml:4: SPEC_Z: unknown status code 'BAD'", raised(mw.errors, p))
    assert.is_nil(require("moonwire.errors").lookup("SPEC_Y")) -- a bad file adds none
  end)
end)
