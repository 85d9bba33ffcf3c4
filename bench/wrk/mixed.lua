-- Scenario 5, mixed with status (the seed k6 flow): each virtual user checks out its own item,
-- buys it, and reads /status every fifth request.
-- common.lua sits beside this script (or in WRK_LIB): without it wrk would benchmark GET / instead, so stop.
local here = os.getenv("WRK_LIB") or (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
package.path = here .. "/?.lua;" .. package.path
local found, c = pcall(require, "common")
if not found then
  io.stderr:write("cannot load common.lua from " .. here .. " (set WRK_LIB to bench/wrk): " .. tostring(c) .. "\n")
  os.exit(2)
end
local shop, n = nil, 0

function init() shop = c.shopper("m") end
function request()
  n = n + 1
  if n % 5 == 0 then return c.status() end
  return shop.request()
end
function response(status, headers, body) shop.response(status, body) end
