-- Scenario 3, sell-out flow: check out, then buy with the code. Each thread walks its own stride of
-- items with fresh users, and buys every code it gets as soon as it can.
-- common.lua sits beside this script (or in WRK_LIB): without it wrk would benchmark GET / instead, so stop.
local here = os.getenv("WRK_LIB") or (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
package.path = here .. "/?.lua;" .. package.path
local found, c = pcall(require, "common")
if not found then
  io.stderr:write("cannot load common.lua from " .. here .. " (set WRK_LIB to bench/wrk): " .. tostring(c) .. "\n")
  os.exit(2)
end
local shop

function init() shop = c.shopper("s") end
function request() return shop.request() end
function response(status, headers, body) shop.response(status, body) end
