--[[
  sweep: shared prelude, prepended to every script.

  Defines the helpers every script uses, and sweep(), which returns every hold
  whose expiry is at or before `now` to stock: the item is free again, the
  holder's per-user count drops by one, and the code is forgotten (a purchase
  with it gets code_not_found). Every decision sweeps first, so an expired hold
  is never visible to a decision, whether or not the background release has
  run. stats.next_exp is a lower bound on the earliest expiry (0: no holds), so
  most calls skip the sweep without touching the exp set.

  Keys of one sale (the same order in every script; one hash tag per sale):
    KEYS[1] items  hash   item id -> "h|expires_ms|user|code" (held) or "s|user|code" (sold)
    KEYS[2] codes  hash   code -> "h|item|expires_ms|user" (held) or "p|item|purchased_ms|user" (sold)
    KEYS[3] users  hash   user id -> purchases plus live holds
    KEYS[4] exp    zset   code of each live hold, scored by its expiry (ms)
    KEYS[5] stats  hash   sold, held, c_ok, c_rej, p_ok, p_rej, next_exp; exists once the sale is initialised
    KEYS[6] log    stream outcome of every decision, drained into PostgreSQL
]]
local rcall = redis.call

local function clock(nowArg)
  if nowArg ~= '' then return tonumber(nowArg) end
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n) return string.format('%.0f', n) end

-- Releases the holds expired at `now`; returns how many, and the new lower bound on the earliest expiry.
local function sweep(now, nextExp)
  if nextExp == 0 or nextExp > now then return 0, nextExp end
  local released = 0
  for _, code in ipairs(rcall('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
    local item, expires, user = string.match(rcall('HGET', KEYS[2], code) or '', '^h|(%d+)|(%d+)|(.+)$')
    if item then
      rcall('HDEL', KEYS[2], code)
      if rcall('HGET', KEYS[1], item) == 'h|' .. expires .. '|' .. user .. '|' .. code then rcall('HDEL', KEYS[1], item) end
      if rcall('HINCRBY', KEYS[3], user, -1) <= 0 then rcall('HDEL', KEYS[3], user) end
      released = released + 1
    end
  end
  rcall('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  local first = rcall('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  nextExp = tonumber(first[2] or 0)
  rcall('HSET', KEYS[5], 'next_exp', ms(nextExp))
  if released > 0 then rcall('HINCRBY', KEYS[5], 'held', -released) end
  return released, nextExp
end
