--[[
  prelude: shared by every script, prepended to each one when it is registered.

  Names the keys of one sale (the same KEYS order in every script; one hash tag
  per sale, so a call touches one slot), and defines the helpers every script
  uses. ARGV follows one convention everywhere: ARGV[1] now_ms, ARGV[2] sale_id,
  ARGV[3] period_ms, then the script's own arguments.

  Keys of one sale:
    KEYS[1] items  hash   item id -> "h|expires_ms|user|code" (held) or "s|user|code" (sold)
    KEYS[2] codes  hash   code -> "h|item|expires_ms|user" (held) or "p|item|purchased_ms|user" (sold)
    KEYS[3] users  hash   user id -> purchases plus live holds
    KEYS[4] exp    zset   code of each live hold, scored by its expiry (ms)
    KEYS[5] stats  hash   sold, held, c_ok, c_rej, p_ok, p_rej, next_exp; exists once the sale is initialised
    KEYS[6] log    stream the journal: one entry per decision (src/redis/journal.ts names its fields)

  A sale split into shards (SALE_SHARDS > 1, src/redis/shards.ts) has these keys once per shard. A
  shard's items, codes and exp hold its own items, which may also be held tentatively ("t|..." in
  items and codes, in the same shape as "h|...") while the holder's slot is taken on the user's shard;
  its users hash counts the users of that shard (lua/shard_slot.lua says how); its stats hash has
  `shards` set.

  sweep() returns every hold whose expiry is at or before `now` to stock: the
  item is free again, the holder's per-user count drops by one, and the code is
  forgotten (a purchase with it gets code_not_found). Every decision sweeps
  first, so an expired hold is never visible to a decision, whether or not the
  background release has run. stats.next_exp is a lower bound on the earliest
  expiry (0: no holds), so most calls skip the sweep without touching exp.
]]
local rcall = redis.call
local itemsKey, codesKey, usersKey, expKey, statsKey, logKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]

local function clock(nowArg)
  if nowArg ~= '' then return tonumber(nowArg) end
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n) return string.format('%.0f', n) end

-- Releases the holds expired at `now`; returns how many, and the new lower bound on the earliest expiry.
local function sweep(now, nextExp)
  if nextExp == 0 or nextExp > now then return 0, nextExp end
  -- A shard of a split sale counts its holders on their own shards, which learn of an expiry when they ask.
  local countsUsers = rcall('HEXISTS', statsKey, 'shards') == 0
  local released = 0
  for _, code in ipairs(rcall('ZRANGEBYSCORE', expKey, '-inf', now)) do
    local kind, item, expires, user = string.match(rcall('HGET', codesKey, code) or '', '^([ht])|(%d+)|(%d+)|(.+)$')
    if item then
      rcall('HDEL', codesKey, code)
      if rcall('HGET', itemsKey, item) == kind .. '|' .. expires .. '|' .. user .. '|' .. code then rcall('HDEL', itemsKey, item) end
      if countsUsers and rcall('HINCRBY', usersKey, user, -1) <= 0 then rcall('HDEL', usersKey, user) end
      -- A tentative hold was never counted as held.
      if kind == 'h' then released = released + 1 end
    end
  end
  rcall('ZREMRANGEBYSCORE', expKey, '-inf', now)
  local first = rcall('ZRANGE', expKey, 0, 0, 'WITHSCORES')
  nextExp = tonumber(first[2] or 0)
  rcall('HSET', statsKey, 'next_exp', ms(nextExp))
  if released > 0 then rcall('HINCRBY', statsKey, 'held', -released) end
  return released, nextExp
end

-- A user's entry on a user shard of a split sale (lua/shard_slot.lua), "n|code:expires_ms|...": n, whether
-- `code` is listed, the other listed holds as "|code:expires_ms" pieces, and those of them expired at `now` if given.
local function slotsOf(value, code, now)
  local n = tonumber(string.match(value, '^(%d+)'))
  local listed, kept, expired = false, {}, {}
  for held, until_ in string.gmatch(value, '|([^:|]+):(%d+)') do
    if held == code then
      listed = true
    else
      kept[#kept + 1] = '|' .. held .. ':' .. until_
      if now and tonumber(until_) <= now then expired[#expired + 1] = held end
    end
  end
  return n, listed, kept, expired
end

-- The opening of a checkout call: the keys must be the current sale's, initialised; then it sweeps.
-- Returns the items sold and the bound on the earliest expiry, or, when it cannot decide, nil and the reply to give.
local function openSale(now, saleId, periodMs)
  local current = math.floor(now / periodMs)
  if current ~= saleId then return nil, nil, {-10, ms(current)} end
  local stats = rcall('HMGET', statsKey, 'sold', 'next_exp')
  if not stats[1] then return nil, nil, {-11} end
  local _, nextExp = sweep(now, tonumber(stats[2]))
  return tonumber(stats[1]), nextExp
end
