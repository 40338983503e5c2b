--- moonwire.test (mw.test): what a spec run by `moonwire test` uses.
--
--   local mw = require "moonwire"
--   local c = mw.test.client()
--   local res, err = c:call("helloworld.Greeter/SayHello", {name = "Ada"})
--   for msg in c:open("routeguide.RouteGuide/ListFeatures", rect):iter() do ... end
--   local f = c:start("demo.Slow/Wait", {})     -- in flight
--   mw.test.clock.advance(5)                    -- its mw.sleep(5) is over
--   local res = f:wait()
--
-- The mechanism is C's (moonwire.testcore, cmd/test.c: the in-process
-- server, blocking calls through the real codec, the clock's skew); this
-- file is the policy: paths, the call shapes per kind, the error objects,
-- the reload between spec files. Outside `moonwire test` there is no
-- server to call: every function raises.
local client = require "moonwire.client"

local type, error, ipairs, select, tostring = type, error, ipairs, select, tostring
local setmetatable = setmetatable

local M = {}

local core
local function tc()
  if core then return core end
  local ok, mod = pcall(require, "moonwire.testcore")
  if not ok then error("mw.test works only in specs run by `moonwire test`", 3) end
  core = mod
  return core
end

--- "pkg.Svc/Method" or "/pkg.Svc/Method" -> "/pkg.Svc/Method".
local function path_of(p, level)
  if type(p) ~= "string" or not p:match "^/?[%w_.]+/[%w_]+$" then
    error(("bad method '%s' (\"pkg.Service/Method\" expected)"):format(tostring(p)), level + 1)
  end
  return p:sub(1, 1) == "/" and p or "/" .. p
end

-- The status of a finished call: nil when OK, else an error object like
-- mw.client's (code, message, details, trailers; headers too).
local function outcome(call)
  local code, message, trailers, headers = call:finish()
  if code == 0 then return nil, trailers, headers end
  local err = client.make_error(code, message, trailers["grpc-status-details-bin"], trailers)
  err.headers = headers
  return err
end

local Stream = {}
Stream.__index = Stream

--- s:send(msg) -> true, or false once the call has ended.
function Stream:send(msg)
  if type(msg) ~= "table" then error("bad argument #1 to 'send' (table expected)", 2) end
  return self.call:send(msg)
end

--- s:close_send(): no more requests.
function Stream:close_send()
  if not self.closed then
    self.closed = true
    self.call:close_send()
  end
  return true
end

--- s:recv() -> the next response; nil at a clean end; nil, err when the
-- call failed.
function Stream:recv()
  if self.done then return nil, self.err end
  local msg = self.call:recv()
  if msg then return msg end
  self.done = true
  self.err, self.trailers, self.headers = outcome(self.call)
  if self.err then self.headers = self.err.headers end
  return nil, self.err
end

--- for msg in s:iter() do ... end; raises the error of a failed call.
function Stream:iter()
  return function()
    local msg, err = self:recv()
    if err then error(err, 2) end
    return msg
  end
end

--- s:finish() -> true, or nil, err: reads what responses are left.
function Stream:finish()
  self:close_send()
  while self:recv() do end
  if self.err then return nil, self.err end
  return true
end

--- s:cancel(): the server sees the call cancelled.
function Stream:cancel()
  self.call:cancel()
end

local Client = {}
Client.__index = Client

local function merged(self, opts, level)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 (options table expected)", level + 1)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "timeout" and k ~= "metadata" then
      error(("unknown call option '%s' (timeout, metadata)"):format(tostring(k)), level + 1)
    end
  end
  local md = {}
  for k, v in pairs(self.metadata or {}) do md[k] = v end
  for k, v in pairs(opts.metadata or {}) do md[k] = v end
  return opts.timeout or self.timeout, md
end

--- c:open(path [, req] [, opts]) -> a stream; req, when given, is sent first
-- and, for a server-streaming method, the sending side is then closed.
function Client:open(path, req, opts)
  path = path_of(path, 2)
  local timeout, md = merged(self, opts, 2)
  local kind = tc().kind(path)
  local s = setmetatable({call = tc().open(path, timeout, md), kind = kind, path = path}, Stream)
  if kind == "unary" or kind == "server-streaming" then
    if type(req) ~= "table" then
      error(("%s is %s: a request table expected"):format(path, kind), 2)
    end
    s:send(req)
    s:close_send()
  elseif req ~= nil then
    s:send(req)
  end
  return s
end

-- Every response of s, then its error.
local function collect(s)
  local out = {}
  for i = 1, math.huge do
    local msg = s:recv()
    if not msg then break end
    out[i] = msg
  end
  return out, s.err
end

local Future = {}
Future.__index = Future

--- f:wait() -> what c:call would have returned.
function Future:wait()
  local s = self.stream
  if self.kind == "unary" or self.kind == "client-streaming" then
    local res = s:recv()
    if s.err then return nil, s.err end
    if res then s:finish() end
    if s.err then return nil, s.err end
    return res
  end
  local out, err = collect(s)
  if err then
    err.responses = out
    return nil, err
  end
  return out
end

function Future:cancel() self.stream:cancel() end

--- c:start(path, req [, opts]) -> a future: the call is sent and the
-- server has been given it; f:wait() gives what c:call returns.
function Client:start(path, req, opts)
  path = path_of(path, 2)
  local kind = tc().kind(path)
  local s
  if kind == "client-streaming" or kind == "bidi-streaming" then
    if type(req) ~= "table" then error(("%s is %s: a list of requests expected"):format(path, kind), 2) end
    s = self:open(path, nil, opts)
    for _, msg in ipairs(req) do
      if not s:send(msg) then break end
    end
    s:close_send()
  else
    s = self:open(path, req, opts)
  end
  return setmetatable({stream = s, kind = kind}, Future)
end

--- c:call(path, req [, opts]):
--   unary            req -> res | nil, err
--   server-streaming req -> {responses} | nil, err (err.responses: those that came)
--   client-streaming {reqs} -> res | nil, err
--   bidi-streaming   {reqs} -> {responses} | nil, err
-- (c:open gives the stream itself, with s.headers and s.trailers at its end.)
-- opts: timeout (seconds), metadata ({key = "value"}).
function Client:call(path, req, opts)
  return Client.start(self, path, req, opts):wait()
end

--- mw.test.client([opts]) -> a client of the services under test;
-- opts.timeout and opts.metadata are defaults for its calls.
function M.client(opts)
  tc()
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'client' (table expected)", 2) end
  return setmetatable({timeout = opts.timeout, metadata = opts.metadata}, Client)
end

--- mw.test.address() -> "127.0.0.1:PORT", for clients of one's own
-- (mw.client does not reach it: its calls wait in handlers).
function M.address() return tc().address() end

--- mw.test.reload(): the directory's files loaded again (a fresh state for
-- every handler), as between spec files. Raises with the problems when
-- they do not load.
function M.reload()
  local ok, problems = tc().reload()
  if not ok then error("reload failed:\n" .. problems, 2) end
end

--- The clock: mw.test.clock.advance(seconds) moves the runtime's clock
-- ahead (mw.sleep, timers, ctx deadlines and mw.now in handlers); it
-- never goes back. mw.test.clock.offset() says how far it has been moved.
M.clock = {
  advance = function(seconds)
    if type(seconds) ~= "number" or seconds < 0 or seconds ~= seconds then
      error("bad argument #1 to 'advance' (seconds >= 0 expected)", 2)
    end
    tc().advance(seconds)
  end,
  offset = function() return tc().skew() end,
}

--- Run by `moonwire test` before busted's runner: the reload between spec
-- files, installed as busted's helper (it runs once busted is set up).
function M.start()
  package.preload["moonwire.test.helper"] = function()
    local busted = require "busted"
    local first = true
    busted.subscribe({"file", "start"}, function()
      if first then
        first = false -- the directory was just loaded
      else
        M.reload()
      end
      return nil, true
    end)
    return true
  end
  arg[#arg + 1] = "--helper=moonwire.test.helper"
end

return M
