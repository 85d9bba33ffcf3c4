-- Scenario 2, fresh users: every request a new user, random items within the sale.
-- common.lua sits beside this script (or in WRK_LIB): without it wrk would benchmark GET / instead, so stop.
local here = os.getenv("WRK_LIB") or (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
package.path = here .. "/?.lua;" .. package.path
local found, c = pcall(require, "common")
if not found then
  io.stderr:write("cannot load common.lua from " .. here .. " (set WRK_LIB to bench/wrk): " .. tostring(c) .. "\n")
  os.exit(2)
end
local items = tonumber(os.getenv("SALE_ITEMS") or "10000")
local n = 0

function init() c.seed() end
function request()
  n = n + 1
  return c.checkout("f" .. tid .. "-" .. n, math.random(items))
end
function response(status, headers, body) c.record(status, body) end
