-- checkout flood: random users and random items; counts statuses so the runner can compare with PostgreSQL.
local items = tonumber(os.getenv("SALE_ITEMS") or "10000")
local users = tonumber(os.getenv("USERS") or "100000")
local counts = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  counts = {}
end

function request()
  return wrk.format("POST", string.format("/checkout?user_id=u%d&id=%d", math.random(users), math.random(items)))
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for status, n in pairs(c) do total[status] = (total[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(total) do table.insert(parts, string.format('"%d":%d', status, n)) end
  io.write(string.format('STATUS {%s}\n', table.concat(parts, ",")))
  io.write(string.format('LATENCY {"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f}\n', latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
