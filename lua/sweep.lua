--[[
  sweep: shared prelude, prepended to every script that reads or changes holds.

  Returns every hold whose expiry is at or before `now` to stock: the item is
  free again, the holder's per-user count drops by one, and the code is
  forgotten (a purchase with it gets code_not_found). Each hold is released
  once, so the cost is amortised over the checkouts that granted them, and an
  expired hold is never visible to a decision, whether or not the background
  release has run yet.

  Keys of one sale (the same order in every script):
    KEYS[1] meta   hash   exists once the sale is initialised
    KEYS[2] holds  hash   item id -> code of its live hold
    KEYS[3] codes  hash   code -> "h|item|expires_ms|user" (held) or "p|item|purchased_ms|user" (sold)
    KEYS[4] sold   hash   item id -> code it was bought with
    KEYS[5] users  hash   user id -> purchases plus live holds
    KEYS[6] exp    zset   code scored by its hold's expiry (ms)
    KEYS[7] stats  hash   sold, held, c_ok, c_rej, p_ok, p_rej
    KEYS[8] log    stream outcome of every decision, drained into PostgreSQL
]]
local rcall = redis.call

local function clock(nowArg)
  if nowArg ~= '' then return tonumber(nowArg) end
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function sweep(now)
  local due = rcall('ZRANGEBYSCORE', KEYS[6], '-inf', now)
  for _, code in ipairs(due) do
    local held = rcall('HGET', KEYS[3], code)
    local item, user = string.match(held or '', '^h|(%d+)|%d+|(.+)$')
    if item then
      rcall('HDEL', KEYS[3], code)
      if rcall('HGET', KEYS[2], item) == code then rcall('HDEL', KEYS[2], item) end
      if rcall('HINCRBY', KEYS[5], user, -1) <= 0 then rcall('HDEL', KEYS[5], user) end
      rcall('HINCRBY', KEYS[7], 'held', -1)
    end
  end
  if #due > 0 then rcall('ZREMRANGEBYSCORE', KEYS[6], '-inf', now) end
  return #due
end

local function ms(n) return string.format('%.0f', n) end
