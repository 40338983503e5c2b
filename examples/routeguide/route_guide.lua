-- routeguide.RouteGuide: one handler for each of gRPC's four kinds of method.
local mw = require "moonwire"
local db = require "data.features"

local RouteGuide = mw.service "routeguide.RouteGuide"

local EARTH_RADIUS_M = 6371000
local E7 = 1e7

-- The great-circle distance between two points, in metres (haversine).
local function distance(p1, p2)
  local lat1 = math.rad(p1.latitude / E7)
  local lat2 = math.rad(p2.latitude / E7)
  local dlat = lat2 - lat1
  local dlon = math.rad((p2.longitude - p1.longitude) / E7)
  local a = math.sin(dlat / 2) ^ 2
          + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ^ 2
  local c = 2 * math.atan(math.sqrt(a), math.sqrt(1 - a))
  return EARTH_RADIUS_M * c
end

local function point_of(p)
  -- An absent Point is nil in Lua; treat it as (0, 0) as proto3 would.
  return p or {latitude = 0, longitude = 0}
end

local function in_range(v, a, b)
  if a > b then a, b = b, a end
  return v >= a and v <= b
end

local function key(p)
  return p.latitude .. "," .. p.longitude
end

-- Unary: the feature at a point, or a nameless one when nothing is there.
function RouteGuide.GetFeature(point, ctx)
  local f = db.at(point)
  if f then return f end
  return {name = "", location = point}
end

-- Server streaming: every named feature inside the rectangle (corners in any
-- order, edges included).
function RouteGuide.ListFeatures(rect, stream, ctx)
  local lo, hi = point_of(rect.lo), point_of(rect.hi)
  for _, f in ipairs(db.features) do
    local loc = f.location
    if f.name ~= ""
        and in_range(loc.latitude, lo.latitude, hi.latitude)
        and in_range(loc.longitude, lo.longitude, hi.longitude) then
      stream:send(f)
    end
  end
end

-- Client streaming: how many points, how many named features among them, how
-- far (the sum of the legs, rounded down to whole metres) and how long.
function RouteGuide.RecordRoute(stream, ctx)
  local started = os.time()
  local points, features, metres = 0, 0, 0.0
  local previous
  for point in stream:iter() do
    points = points + 1
    local f = db.at(point)
    if f and f.name ~= "" then features = features + 1 end
    if previous then metres = metres + distance(previous, point) end
    previous = point
  end
  return {
    point_count = points,
    feature_count = features,
    distance = math.floor(metres),
    elapsed_time = os.time() - started,
  }
end

-- Notes left so far, per point ("lat,lon" -> array of RouteNote). Module
-- state is per worker: a server with several workers keeps one such table
-- in each.
local notes = {}

-- Bidi: for each note received, first send back the notes left earlier at
-- the same point, then remember the new one.
function RouteGuide.RouteChat(stream, ctx)
  for note in stream:iter() do
    local loc = point_of(note.location)
    local k = key(loc)
    local here = notes[k]
    if not here then
      here = {}
      notes[k] = here
    end
    for _, earlier in ipairs(here) do stream:send(earlier) end
    here[#here + 1] = {location = {latitude = loc.latitude, longitude = loc.longitude},
                       message = note.message}
  end
end

return RouteGuide
