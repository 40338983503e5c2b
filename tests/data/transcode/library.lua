-- library.v1.Library: a small in-memory library behind the REST rules of
-- library.proto, for the REST transcoding tests. State lives in this Lua
-- state (one per worker: run it with `workers: 1` when calls must see each
-- other's writes).
local mw = require "moonwire"

local Library = mw.service "library.v1.Library"

local shelves = {["shelves/1"] = {name = "shelves/1", theme = "fiction"}}
local books = {} -- name -> book
local order = {} -- names in creation order

local function shelf_of(name)
  return name:match("^(shelves/[^/]+)/books/[^/]+$")
end

function Library.GetShelf(req)
  local s = shelves[req.name]
  if not s then mw.fail(mw.NOT_FOUND, "no shelf " .. req.name) end
  return s
end

function Library.ListBooks(req)
  local out = {}
  for _, name in ipairs(order) do
    local b = books[name]
    if b and (req.parent == "" or shelf_of(name) == req.parent)
        and (req.genre == "GENRE_UNSPECIFIED" or b.genre == req.genre) then
      out[#out + 1] = b
      if req.page_size > 0 and #out == req.page_size then break end
    end
  end
  return {books = out}
end

function Library.CreateBook(req)
  if not shelves[req.parent] then mw.fail(mw.NOT_FOUND, "no shelf " .. req.parent) end
  local book = req.book or {}
  local name = req.parent .. "/books/" .. (#order + 1)
  book.name = name
  books[name] = book
  order[#order + 1] = name
  return book
end

function Library.UpdateBook(req)
  local b = books[req.book.name]
  if not b then mw.fail(mw.NOT_FOUND, "no book " .. req.book.name) end
  for k, v in pairs(req.book) do b[k] = v end
  return b
end

function Library.DeleteBook(req)
  if not books[req.name] then mw.fail(mw.NOT_FOUND, "no book " .. req.name) end
  books[req.name] = nil
  return {}
end

function Library.MoveBook(req)
  local b = books[req.name]
  if not b then mw.fail(mw.NOT_FOUND, "no book " .. req.name) end
  if not shelves[req.other_shelf_name] then
    mw.fail(mw.FAILED_PRECONDITION, "no shelf " .. req.other_shelf_name)
  end
  return b
end

function Library.GetFile(req)
  return {path = req.path, content = "contents of " .. req.path}
end

function Library.Search(req)
  local out = {}
  for _, name in ipairs(order) do
    local b = books[name]
    if b and b.title:find(req.query, 1, true) then out[#out + 1] = b end
  end
  return {books = out}
end

function Library.Echo(req)
  return req
end

function Library.Plain(req)
  return req
end
