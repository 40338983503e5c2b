--- moonwire.metrics: metrics declared by scripts, exposed on the admin
-- listener's /metrics next to the server's own (docs/metrics.md).
--
--   local calls = mw.metrics.counter("shop_orders_total", "Orders placed.", {"kind"})
--   calls:inc({kind = "gift"})                 -- or calls:inc({"gift"})
--   local depth = mw.metrics.gauge("shop_queue_depth", "Orders waiting.")
--   depth:set(12)
--   local lat = mw.metrics.histogram("shop_db_seconds", "DB time.", {"op"},
--                                    {0.001, 0.01, 0.1, 1})
--   lat:observe(0.004, {op = "get"})
--
-- Declare at script load. The same name declared again with the same type,
-- labels and buckets (by another worker, or after a reload) is the same
-- metric; another shape raises. With the admin listener off the updates
-- do nothing.
local core = require "moonwire.core"

local M = {}

local function check(name, help, labels, fname)
  if type(name) ~= "string" then
    error("bad argument #1 to '" .. fname .. "' (string expected, got " .. type(name) .. ")", 3)
  end
  if help ~= nil and type(help) ~= "string" then
    error("bad argument #2 to '" .. fname .. "' (string expected, got " .. type(help) .. ")", 3)
  end
  if labels ~= nil and type(labels) ~= "table" then
    error("bad argument #3 to '" .. fname .. "' (table expected, got " .. type(labels) .. ")", 3)
  end
end

local function declare(kind, name, help, labels, buckets)
  local ok, m = pcall(core.metric_declare, kind, name, help, labels, buckets)
  if not ok then error(m, 3) end
  return m
end

--- A counter: m:inc(labels), m:add(v, labels) (v >= 0).
function M.counter(name, help, labels)
  check(name, help, labels, "counter")
  return declare("counter", name, help, labels)
end

--- A gauge: m:set(v, labels), m:inc(labels), m:dec(labels), m:add(v, labels).
function M.gauge(name, help, labels)
  check(name, help, labels, "gauge")
  return declare("gauge", name, help, labels)
end

--- A histogram: m:observe(v, labels); buckets are upper bounds, increasing
-- (nil: .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10).
function M.histogram(name, help, labels, buckets)
  check(name, help, labels, "histogram")
  if buckets ~= nil and type(buckets) ~= "table" then
    error("bad argument #4 to 'histogram' (table expected, got " .. type(buckets) .. ")", 2)
  end
  return declare("histogram", name, help, labels, buckets)
end

return M
