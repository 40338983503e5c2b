--- moonwire.status: status codes and status errors.
--
-- A status error is a table {code =, message =} with the moonwire.status
-- metatable; handlers raise one with mw.fail and the runtime ends the call
-- with its code and message. Anything else a handler raises becomes
-- INTERNAL with an error id (the traceback goes to the log only).
local core = require "moonwire.core"

local M = {}

--- name -> number for every gRPC status code (OK = 0 ... UNAUTHENTICATED = 16).
M.codes = core.codes

--- Ends the call with a status: fail(mw.NOT_FOUND, "no such user").
-- code is a number or a name ("NOT_FOUND"). Never returns.
M.fail = core.fail

--- A status error object, to raise later with error().
M.status = core.status

--- True when err is a status error object.
M.is_status = core.is_status

local is_status = core.is_status

--- True when err is the error a wait raises because the call was cancelled
-- or its deadline passed.
function M.is_cancelled(err)
  return is_status(err) and err.cancelled == true
end

return M
