-- Scenario 1, checkout flood: random users and random items; once the stock is held, mostly rejections.
package.path = os.getenv("WRK_LIB") .. "/?.lua;" .. package.path
local c = require("common")
local items = tonumber(os.getenv("SALE_ITEMS") or "10000")
local users = tonumber(os.getenv("USERS") or "100000")

function init() c.seed() end
function request() return c.checkout("u" .. math.random(users), math.random(items)) end
function response(status, headers, body) c.record(status, body) end
