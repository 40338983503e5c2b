-- The session fan-out benchmark's handlers: Watch joins a stream to a
-- topic (or only holds the stream open, for the memory baseline); Publish
-- publishes n messages, pausing `pause` seconds after every `batch`.
local mw = require "moonwire"
local Room = mw.service "sbench.Room"

local function room_of(req) return mw.sessions[req.room ~= "" and req.room or "bench"] end

function Room.Watch(req, stream)
  if req.hold then
    stream:send({seq = 0})
    mw.sleep(3600)
    return
  end
  local opts
  if req.resume then opts = {resume = {offset = req.offset, epoch = req.epoch}} end
  local sub = room_of(req):join(req.topic, stream, opts)
  stream:send({seq = 0, epoch = sub.epoch, recovered = sub.recovered == true,
               replayed = sub.replayed, top = sub.offset})
  sub:wait()
end

function Room.Publish(req)
  local room = room_of(req)
  local pad = string.rep("x", req.size)
  local t0 = mw.now()
  local batch = req.batch > 0 and req.batch or req.n
  for i = 1, req.n do
    room:publish(req.topic, {seq = i, sent_ns = math.floor(mw.now() * 1e9), pad = pad})
    if i % batch == 0 and req.pause > 0 then mw.sleep(req.pause) end
  end
  return {seconds = mw.now() - t0, joined = #room:list(req.topic)}
end

return Room
