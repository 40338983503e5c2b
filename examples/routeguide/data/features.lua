-- A small, made-up feature database for the RouteGuide example.
--
-- Every location is in the E7 representation (degrees times 10^7). The
-- names and places are invented; the last two entries have no name: they
-- are known points with nothing at them, which GetFeature answers like any
-- other empty spot.
local M = {}

M.features = {
  {name = "Old Mill Bridge",            location = {latitude = 407838351, longitude = -746143763}},
  {name = "Heron Lake Boathouse",       location = {latitude = 408122808, longitude = -743999179}},
  {name = "Copper Hill Lookout",        location = {latitude = 413628156, longitude = -749015468}},
  {name = "Willow Creek Campground",    location = {latitude = 419999544, longitude = -740371136}},
  {name = "Stone Arch Tunnel",          location = {latitude = 414008389, longitude = -743951297}},
  {name = "Lantern Square",             location = {latitude = 419611318, longitude = -746524769}},
  {name = "Granite Quarry Trailhead",   location = {latitude = 406109563, longitude = -742186778}},
  {name = "Fox Hollow Farm Stand",      location = {latitude = 416802456, longitude = -742370183}},
  {name = "Blue Pine Ranger Station",   location = {latitude = 412950425, longitude = -741077389}},
  {name = "Cedar Point Lighthouse",     location = {latitude = 412144655, longitude = -743949739}},
  {name = "Marsh Wren Observatory",     location = {latitude = 415736605, longitude = -742847522}},
  {name = "Echo Falls Footbridge",      location = {latitude = 410248224, longitude = -747127767}},
  {name = "Red Barn Museum",            location = {latitude = 404310607, longitude = -740282632}},
  {name = "Kestrel Ridge Shelter",      location = {latitude = 409319800, longitude = -748559000}},
  {name = "Sundial Garden",             location = {latitude = 406411633, longitude = -741722051}},
  {name = "Harbor Ferry Landing",       location = {latitude = 403955400, longitude = -740125800}},
  {name = "Juniper Well",               location = {latitude = 417951888, longitude = -748642100}},
  {name = "Clocktower Junction",        location = {latitude = 411833000, longitude = -745000000}},
  {name = "",                           location = {latitude = 409146138, longitude = -746188906}},
  {name = "",                           location = {latitude = 402948455, longitude = -747969216}},
}

-- "lat,lon" -> feature, for lookups by exact point.
M.by_point = {}
for _, f in ipairs(M.features) do
  M.by_point[f.location.latitude .. "," .. f.location.longitude] = f
end

-- The feature at point p, or nil when the database has none there.
function M.at(p)
  return M.by_point[p.latitude .. "," .. p.longitude]
end

return M
