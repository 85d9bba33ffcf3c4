-- Scenario 4, purchase storm: valid codes (each bought once), then the same codes again (code_used),
-- with one bogus code in every four requests (code_not_found). CODES_FILE holds one code per line.
-- common.lua sits beside this script (or in WRK_LIB): without it wrk would benchmark GET / instead, so stop.
local here = os.getenv("WRK_LIB") or (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
package.path = here .. "/?.lua;" .. package.path
local found, c = pcall(require, "common")
if not found then
  io.stderr:write("cannot load common.lua from " .. here .. " (set WRK_LIB to bench/wrk): " .. tostring(c) .. "\n")
  os.exit(2)
end
local threads_n = tonumber(os.getenv("WRK_THREADS") or "2")
local codes, i, n = {}, 0, 0

function init()
  c.seed()
  local k = 0
  for line in io.lines(os.getenv("CODES_FILE")) do
    k = k + 1
    if k % threads_n == tid % threads_n then table.insert(codes, line) end
  end
end
function request()
  n = n + 1
  if n % 4 == 0 then
    local sale = codes[1]:match("^(%d+)%.")
    return c.purchase(string.format("%s.bogus%017d", sale, math.random(1e9)))
  end
  i = i % #codes + 1
  return c.purchase(codes[i])
end
function response(status, headers, body) c.record(status, body) end
