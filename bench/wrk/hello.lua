-- The baseline: the same wrk settings against a plain Bun.serve hello-world.
-- common.lua sits beside this script (or in WRK_LIB): without it wrk would benchmark GET / instead, so stop.
local here = os.getenv("WRK_LIB") or (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
package.path = here .. "/?.lua;" .. package.path
local found, c = pcall(require, "common")
if not found then
  io.stderr:write("cannot load common.lua from " .. here .. " (set WRK_LIB to bench/wrk): " .. tostring(c) .. "\n")
  os.exit(2)
end
function request() return wrk.format("GET", "/") end
function response(status, headers, body) c.count("hello", tostring(status)) end
