-- Scenario 5, mixed with status (the seed k6 flow): each virtual user checks out its own item,
-- buys it, and reads /status every few iterations.
package.path = os.getenv("WRK_LIB") .. "/?.lua;" .. package.path
local c = require("common")
local items = tonumber(os.getenv("SALE_ITEMS") or "10000")
local threads_n = tonumber(os.getenv("WRK_THREADS") or "2")
local codes, next_item, n = {}, nil, 0

function init() next_item = c.strider(items, threads_n) end
function request()
  n = n + 1
  if n % 5 == 0 then return c.status() end
  local code = table.remove(codes)
  if code then return c.purchase(code) end
  return c.checkout("m" .. tid .. "-" .. n, next_item())
end
function response(status, headers, body)
  local code = c.record(status, body)
  if code then table.insert(codes, code) end
end
