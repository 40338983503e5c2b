--- moonwire.sessions: stream session rooms (mw.sessions.NAME), the policy
-- over the C rooms of moonwire.core (lua/l_sessions.c):
--
--   local room = mw.sessions.chat                  -- declared in the config
--   local sub = room:join(topic, stream, {resume = {offset = o, epoch = e}})
--   sub.id, sub.epoch, sub.offset, sub.recovered   -- who, which history, where
--   sub:wait()                                     -- publications flow meanwhile
--   room:publish(topic, msg) -> offset              -- to every joined stream
--   room:send(id, msg)  room:close(id [, status])  room:list(topic)
--   room:history(topic [, since])  room:snapshot(topic)
--
-- A publisher that meets a full queue under policy block waits here (a
-- pending operation of its handler) and tries again: the C side publishes
-- a message to all of a topic or to none.
local core = require "moonwire.core"
local status = require "moonwire.status"

local M = {}

local Room = {}
Room.__index = Room
local Sub = {}
Sub.__index = Sub

local function check_topic(topic, level)
  if type(topic) ~= "string" or topic == "" then
    error("sessions: a topic (a non-empty string) expected, got " .. type(topic), level + 1)
  end
end

--- room:join(topic, stream [, {resume = {offset =, epoch =} | false}]) -> sub. The
-- stream receives every publication of topic from now on, and, when the
-- resume's epoch is the topic's and its history still holds every
-- publication after offset, those first (sub.recovered = true,
-- sub.replayed = how many). sub.recovered is false when it could not
-- (the client reloads a snapshot), nil without a resume. Without resume
-- the call's Last-Event-ID ("<epoch>:<offset>", ctx.resume) is the resume;
-- resume = false joins from now whatever the client says. It leaves when
-- the stream ends, or with sub:leave().
function Room:join(topic, stream, opts)
  check_topic(topic, 2)
  local offset, epoch
  if opts ~= nil and type(opts) ~= "table" then error("join: options (a table) expected", 2) end
  local r = opts and opts.resume
  if r == nil then
    -- An event stream's client says where it left off in Last-Event-ID
    -- (the ids the HTTP listener gives publications): resume from there.
    offset, epoch = core.session_last_event_id(stream)
  elseif r ~= false then
    do
      if type(r) ~= "table" then error("join: resume = {offset =, epoch =} expected", 2) end
      offset, epoch = r.offset, r.epoch
      if offset == nil then offset = 0 end
      if math.type(offset) ~= "integer" or offset < 0 then
        error("join: resume.offset must be an integer >= 0, got " .. tostring(offset), 2)
      end
      if epoch ~= nil and type(epoch) ~= "string" then
        error("join: resume.epoch must be a string", 2)
      end
      epoch = epoch or ""
    end
  end
  local id, ep, top, recovered, replayed = core.session_join(self._h, topic, stream, offset, epoch)
  return setmetatable({id = id, topic = topic, epoch = ep, offset = top,
                       recovered = recovered, replayed = replayed, _stream = stream}, Sub)
end

--- sub:wait(): the handler waits while publications flow to its stream,
-- until the call ends: cancelled (raises the cancelled error), or closed by
-- the room (room:close, policy close: the stream ends with that status).
function Sub:wait() return core.session_hold(self._stream) end

--- sub:leave() -> whether it was still joined.
function Sub:leave() return core.session_leave(self._stream, self.id) end

-- Runs op until it is not refused for a full queue, waiting for room
-- between tries.
local function until_room(op, ...)
  while true do
    local seen = core.session_version()
    local res, err = op(...)
    if res ~= nil or err ~= "full" then return res, err end
    core.session_wait(seen)
  end
end

--- room:publish(topic, msg) -> offset. msg is a table of the room's
-- message type (encoded once, the same bytes for every stream) or its
-- encoded bytes. Under policy block, waits while a joined stream's queue
-- is full (so only from a handler then).
function Room:publish(topic, msg)
  check_topic(topic, 2)
  return until_room(core.session_publish, self._h, topic, msg)
end

--- room:send(id, msg) -> true | nil, "not found": to one session.
function Room:send(id, msg)
  if math.type(id) ~= "integer" then error("send: a session id (an integer) expected", 2) end
  return until_room(core.session_send, self._h, id, msg)
end

--- room:close(id [, status]) -> true | nil, "not found". Ends the session's
-- stream with status: nil (OK), a code (number or name), or a status
-- object / {code =, message =}.
function Room:close(id, st)
  if math.type(id) ~= "integer" then error("close: a session id (an integer) expected", 2) end
  local code, msg = 0, ""
  if type(st) == "table" then
    local why
    code, why = status.code_of(st.code)
    if not code then error("close: " .. why, 2) end
    msg = st.message ~= nil and tostring(st.message) or ""
  elseif st ~= nil then
    local why
    code, why = status.code_of(st)
    if not code then error("close: " .. why, 2) end
  end
  return core.session_close(self._h, id, code, msg)
end

--- room:list(topic) -> {id, ...}: the sessions joined to topic, oldest first.
function Room:list(topic)
  check_topic(topic, 2)
  return core.session_list(self._h, topic)
end

--- room:history(topic [, since [, max]]) -> {offset =, epoch =,
-- publications = {{offset =, message =}, ...}}: what the history holds
-- after offset since (0: all), oldest first.
function Room:history(topic, since, max)
  check_topic(topic, 2)
  if since ~= nil and (math.type(since) ~= "integer" or since < 0) then
    error("history: since must be an integer >= 0", 2)
  end
  local epoch, top, pubs = core.session_history(self._h, topic, since or 0, max)
  if epoch == nil then return nil, top end -- a room on Redis that is down
  return {epoch = epoch, offset = top, publications = pubs}
end

--- room:snapshot(topic): the recent state of topic for a unary handler to
-- serve (the history, with the epoch and offset a stream resumes from).
function Room:snapshot(topic)
  check_topic(topic, 2)
  local epoch, top, pubs = core.session_history(self._h, topic, 0)
  if epoch == nil then return nil, top end
  return {epoch = epoch, offset = top, publications = pubs}
end

--- room.config: what the config declared (name, message, policy, buffer,
-- history = {size, ttl}, offset_field).

function M.room(name)
  local h, names = core.session_room(name)
  if not h then
    if names == "" then
      error(("unknown sessions '%s' (none are configured: add them to the config's "
        .. "sessions: section, e.g. sessions: {%s: {message: pkg.Event}})"):format(name, name), 3)
    end
    error(("unknown sessions '%s' (configured: %s)"):format(name, names), 3)
  end
  return setmetatable({_h = h, name = name, config = core.session_config(h)}, Room)
end

return M
