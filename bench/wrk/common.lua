-- Shared by every scenario: counts what was sent and every answer by kind and outcome, and prints one
-- JSON line (WRKRESULT) at the end for bench/run.ts. wrk keeps one Lua state per thread; done() gathers them.
local M = {}
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

sent = { checkout = 0, purchase = 0, status = 0 }
counts = {}

local checkout_errors = { unknown_item = 1, sold_out = 1, sale_paused = 1, item_sold = 1, item_reserved = 1, user_limit = 1, no_active_sale = 1 }
local purchase_errors = { code_not_found = 1, code_used = 1 }

-- Which request an answer belongs to, from its body (connections of a thread interleave).
function M.classify(status, body)
  local err = body:match('"error":"([%w_]+)"')
  if status == 200 then
    if body:find('"expires_at"', 1, true) then return "checkout", "ok" end
    if body:find('"purchased_at"', 1, true) then return "purchase", "ok" end
    return "status", "ok"
  end
  if err and checkout_errors[err] then return "checkout", err end
  if err and purchase_errors[err] then return "purchase", err end
  return "other", tostring(status) .. ":" .. tostring(err)
end

function M.count(kind, outcome)
  local key = kind .. ":" .. outcome
  counts[key] = (counts[key] or 0) + 1
end

function M.checkout(user, item)
  sent.checkout = sent.checkout + 1
  return wrk.format("POST", "/checkout?user_id=" .. user .. "&id=" .. item)
end

function M.purchase(code)
  sent.purchase = sent.purchase + 1
  return wrk.format("POST", "/purchase?code=" .. code)
end

function M.status()
  sent.status = sent.status + 1
  return wrk.format("GET", "/status")
end

-- The default answer handler: count it; return the code of a successful checkout.
function M.record(status, body)
  local kind, outcome = M.classify(status, body or "")
  M.count(kind, outcome)
  if kind == "checkout" and outcome == "ok" then return body:match('"code":"([^"]+)"') end
end

local function encode(t)
  local parts = {}
  for k, v in pairs(t) do table.insert(parts, string.format('"%s":%d', k, v)) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local total, all_sent = {}, { checkout = 0, purchase = 0, status = 0 }
  for _, thread in ipairs(threads) do
    for k, v in pairs(thread:get("counts")) do total[k] = (total[k] or 0) + v end
    for k, v in pairs(thread:get("sent")) do all_sent[k] = all_sent[k] + v end
  end
  io.write(string.format('WRKRESULT {"requests":%d,"duration_us":%d,"errors":%d,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"counts":%s,"sent":%s}\n',
    summary.requests, summary.duration, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000, encode(total), encode(all_sent)))
end

-- Each thread walks its own stride of the items (tid, tid + threads, ...), wrapping around at the end.
function M.strider(items, threads)
  local next_item = tid
  return function()
    local item = next_item
    next_item = next_item + threads
    if next_item > items then next_item = tid end
    return item
  end
end

-- A shopper for this thread: checks out the next item of its stride as a fresh user (prefix .. tid .. "-" .. n),
-- and buys every code it gets before checking out again.
function M.shopper(prefix)
  local next_item = M.strider(tonumber(os.getenv("SALE_ITEMS") or "10000"), tonumber(os.getenv("WRK_THREADS") or "2"))
  local codes, n = {}, 0
  return {
    request = function()
      local code = table.remove(codes)
      if code then return M.purchase(code) end
      n = n + 1
      return M.checkout(prefix .. tid .. "-" .. n, next_item())
    end,
    response = function(status, body)
      local code = M.record(status, body)
      if code then table.insert(codes, code) end
    end,
  }
end

function M.seed()
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919 + tonumber(tostring({}):sub(8), 16) % 100000)
end

return M
