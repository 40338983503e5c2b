-- The four kinds of method through mw.test's client. Run with:
--   moonwire test examples/routeguide
local mw = require "moonwire"
local db = require "data.features"

describe("routeguide.RouteGuide", function()
  local c = mw.test.client()
  local mill = db.features[1].location -- Old Mill Bridge

  it("answers GetFeature (unary)", function()
    local f = assert(c:call("routeguide.RouteGuide/GetFeature", mill))
    assert.are.equal("Old Mill Bridge", f.name)
  end)

  it("streams ListFeatures (server streaming)", function()
    local rect = {lo = {latitude = 400000000, longitude = -750000000},
                  hi = {latitude = 420000000, longitude = -730000000}}
    local all = assert(c:call("routeguide.RouteGuide/ListFeatures", rect))
    assert.is_true(#all > 5)
    -- or one at a time
    local n = 0
    for f in c:open("routeguide.RouteGuide/ListFeatures", rect):iter() do
      assert.are_not.equal("", f.name)
      n = n + 1
    end
    assert.are.equal(#all, n)
  end)

  it("sums RecordRoute (client streaming)", function()
    local points = {db.features[1].location, db.features[2].location, db.features[3].location}
    local summary = assert(c:call("routeguide.RouteGuide/RecordRoute", points))
    assert.are.equal(3, summary.point_count)
    assert.are.equal(3, summary.feature_count)
    assert.is_true(summary.distance > 0)
  end)

  it("echoes earlier notes in RouteChat (bidi)", function()
    local s = c:open("routeguide.RouteGuide/RouteChat")
    s:send({location = mill, message = "first"})
    s:send({location = mill, message = "second"}) -- answered with "first"
    local got = s:recv()
    assert.are.equal("first", got.message)
    assert.is_true(s:finish())
  end)
end)
