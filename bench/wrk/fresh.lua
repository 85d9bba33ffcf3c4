-- Scenario 2, fresh users: every request a new user, random items within the sale.
package.path = os.getenv("WRK_LIB") .. "/?.lua;" .. package.path
local c = require("common")
local items = tonumber(os.getenv("SALE_ITEMS") or "10000")
local n = 0

function init() c.seed() end
function request()
  n = n + 1
  return c.checkout("f" .. tid .. "-" .. n, math.random(items))
end
function response(status, headers, body) c.record(status, body) end
