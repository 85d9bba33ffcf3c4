-- Scenario 3, sell-out flow: check out, then buy with the code. Each thread walks its own stride of
-- items with fresh users, and buys every code it gets as soon as it can.
package.path = os.getenv("WRK_LIB") .. "/?.lua;" .. package.path
local c = require("common")
local shop

function init() shop = c.shopper("s") end
function request() return shop.request() end
function response(status, headers, body) shop.response(status, body) end
