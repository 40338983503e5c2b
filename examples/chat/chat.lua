-- Chat rooms over mw.sessions: a Talk stream joins a room with its first
-- message, every later message is broadcast to the room's streams on every
-- worker, presence is counted in a shared dict, a client that reconnects
-- with its last offset and epoch gets what it missed, and Recent serves a
-- snapshot of the recent messages to a client that could not resume.
local mw = require "moonwire"
local Chat = mw.service "chat.Chat"

local rooms = mw.sessions.rooms     -- sessions.rooms in moonwire.yaml
local presence = mw.shared.presence -- room/user -> open streams

local function present(room)
  local names, prefix = {}, room .. "/"
  for _, key in ipairs(presence:get_keys(0)) do
    if key:sub(1, #prefix) == prefix and (presence:get(key) or 0) > 0 then
      names[#names + 1] = key:sub(#prefix + 1)
    end
  end
  table.sort(names)
  return names
end

function Chat.Talk(stream, ctx)
  local hello = stream:recv()
  if not hello then return end
  if hello.room == "" or hello.user == "" then
    mw.fail(mw.INVALID_ARGUMENT, "the first message names the room and the user")
  end
  local room, user = hello.room, hello.user
  local resume
  if hello.resume_epoch ~= "" then
    resume = {offset = hello.resume_offset, epoch = hello.resume_epoch}
  end
  local sub = rooms:join(room, stream, {resume = resume})
  local key = room .. "/" .. user
  presence:incr(key, 1, 0)
  ctx:on_done(function()
    -- the stream has left the room already; the others hear of it
    if presence:incr(key, -1, 0) <= 0 then presence:delete(key) end
    rooms:publish(room, {kind = "left", room = room, user = user})
  end)
  stream:send({kind = "welcome", room = room, user = user, epoch = sub.epoch,
               offset = sub.offset, recovered = sub.recovered == true, present = present(room)})
  rooms:publish(room, {kind = "joined", room = room, user = user})
  for msg in stream:iter() do
    rooms:publish(room, {kind = "said", room = room, user = user, text = msg.text})
  end
  -- the client half-closed: a listener stays until it goes away
  if hello.stay then sub:wait() end
end

-- The unary snapshot: what a client shows before it streams again from
-- the offset returned (its resume epoch and offset).
function Chat.Recent(req)
  local snap, err = rooms:snapshot(req.room)
  if not snap then mw.fail(mw.UNAVAILABLE, err) end -- a room on Redis that is down
  local messages = {}
  for i, p in ipairs(snap.publications) do messages[i] = p.message end
  return {epoch = snap.epoch, offset = snap.offset, messages = messages,
          present = present(req.room)}
end

return Chat
