-- Scenario: the hot item. One product, everyone wants it.
-- common.lua sits beside this script (or in WRK_LIB): without it wrk would benchmark GET / instead, so stop.
local here = os.getenv("WRK_LIB") or (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
package.path = here .. "/?.lua;" .. package.path
local found, c = pcall(require, "common")
if not found then
  io.stderr:write("cannot load common.lua from " .. here .. " (set WRK_LIB to bench/wrk): " .. tostring(c) .. "\n")
  os.exit(2)
end

-- The hot item: one product with 10,000 units (CATALOG_FILE) and 100,000 users who all want it. Each request
-- is a random user's checkout of item 1, or the purchase of a code this thread got; sold out, the rest refused.
local users = tonumber(os.getenv("USERS") or "100000")
local codes = {}

function init() c.seed() end
function request()
  local code = table.remove(codes)
  if code then return c.purchase(code) end
  return c.checkout("u" .. math.random(users), 1)
end
function response(status, headers, body)
  local code = c.record(status, body)
  if code then table.insert(codes, code) end
end
