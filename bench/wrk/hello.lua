-- The baseline: the same wrk settings against a plain Bun.serve hello-world.
package.path = os.getenv("WRK_LIB") .. "/?.lua;" .. package.path
local c = require("common")
function request() return wrk.format("GET", "/") end
function response(status, headers, body) c.count("hello", tostring(status)) end
