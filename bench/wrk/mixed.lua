-- Scenario 5, mixed with status (the seed k6 flow): each virtual user checks out its own item,
-- buys it, and reads /status every fifth request.
package.path = os.getenv("WRK_LIB") .. "/?.lua;" .. package.path
local c = require("common")
local shop, n = nil, 0

function init() shop = c.shopper("m") end
function request()
  n = n + 1
  if n % 5 == 0 then return c.status() end
  return shop.request()
end
function response(status, headers, body) shop.response(status, body) end
