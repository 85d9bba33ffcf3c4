-- Scenario 3, sell-out flow: check out, then buy with the code. Each thread walks its own stride of
-- items with fresh users, and buys every code it gets as soon as it can.
package.path = os.getenv("WRK_LIB") .. "/?.lua;" .. package.path
local c = require("common")
local items = tonumber(os.getenv("SALE_ITEMS") or "10000")
local threads_n = tonumber(os.getenv("WRK_THREADS") or "2")
local codes, next_item, n = {}, nil, 0

function init() next_item = c.strider(items, threads_n) end
function request()
  local code = table.remove(codes)
  if code then return c.purchase(code) end
  n = n + 1
  return c.checkout("s" .. tid .. "-" .. n, next_item())
end
function response(status, headers, body)
  local code = c.record(status, body)
  if code then table.insert(codes, code) end
end
