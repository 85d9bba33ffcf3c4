--[[
  init_sale: initialise a sale once, empty or from what PostgreSQL kept.

  Used for a sale that has not started yet (empty) and to rebuild a sale after
  Redis lost its state. Does nothing if the sale is already initialised, so
  several instances may race to prepare or rebuild the same sale.

  KEYS[1..6] the sale's keys, as listed in prelude.lua
  ARGV[1]    now_ms      Unix ms; '' uses Redis TIME (production)
  ARGV[2]    sale_id     the sale to initialise (KEYS belong to it)
  ARGV[3]    period_ms   length of a sale in ms
  ARGV[4]    mode        'empty': only allowed before the sale starts, since
                         nothing can have happened in it yet; 'rebuild': from
                         the snapshot that follows; 'empty-shard' and
                         'rebuild-shard': the same for one shard of a split
                         sale (src/redis/shards.ts), whose users are counted
                         from the last section, not from its purchases and holds
  ARGV[5..8] counters: checkouts_ok, checkouts_rejected, purchases_ok, purchases_rejected
  ARGV[9]    P, the number of purchases, followed by P groups of
             item_id, user_id, code, purchased_ms
  then       H, the number of live holds, followed by H groups of
             item_id, user_id, code, expires_ms
  then       (shards only) U, the number of users, followed by U pairs of
             user_id, the users hash's value (lua/shard_slot.lua)

  Returns:
     1  initialised
     0  already initialised: nothing changed
    -1  refused: 'empty' for a sale that has already started
]]
local saleId, periodMs, mode = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local checkoutsOk, checkoutsRejected, purchasesOk, purchasesRejected = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local firstGroup = 9

if rcall('EXISTS', statsKey) == 1 then return 0 end
local now = clock(ARGV[1])
local sharded = mode == 'empty-shard' or mode == 'rebuild-shard'
local countsUsers = not sharded
if (mode == 'empty' or mode == 'empty-shard') and saleId <= math.floor(now / periodMs) then return -1 end
rcall('DEL', itemsKey, codesKey, usersKey, expKey)

local i = firstGroup
local purchases = tonumber(ARGV[i])
for _ = 1, purchases do
  local item, user, code, at = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  rcall('HSET', itemsKey, item, 's|' .. user .. '|' .. code)
  rcall('HSET', codesKey, code, 'p|' .. item .. '|' .. at .. '|' .. user)
  if countsUsers then rcall('HINCRBY', usersKey, user, 1) end
  i = i + 4
end
i = i + 1
local holds, live, nextExp = tonumber(ARGV[i]), 0, 0
for _ = 1, holds do
  local item, user, code, expires = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  -- A store read at a time slightly off the deciding master's clock may have an item sold, or held
  -- twice (an old hold about to expire, and a newer one): a sold item stays sold, the later hold wins.
  local before = rcall('HGET', itemsKey, item)
  if not before or string.sub(before, 1, 1) ~= 's' then
    if before then
      local oldUser, oldCode = string.match(before, '^h|%d+|([^|]+)|(.+)$')
      rcall('HDEL', codesKey, oldCode)
      rcall('ZREM', expKey, oldCode)
      if countsUsers and rcall('HINCRBY', usersKey, oldUser, -1) <= 0 then rcall('HDEL', usersKey, oldUser) end
      live = live - 1
    end
    rcall('HSET', itemsKey, item, 'h|' .. expires .. '|' .. user .. '|' .. code)
    rcall('HSET', codesKey, code, 'h|' .. item .. '|' .. expires .. '|' .. user)
    rcall('ZADD', expKey, expires, code)
    if countsUsers then rcall('HINCRBY', usersKey, user, 1) end
    if nextExp == 0 or tonumber(expires) < nextExp then nextExp = tonumber(expires) end
    live = live + 1
  end
  i = i + 4
end
if sharded then
  i = i + 1
  for _ = 1, tonumber(ARGV[i]) do
    rcall('HSET', usersKey, ARGV[i + 1], ARGV[i + 2])
    i = i + 2
  end
  rcall('HSET', statsKey, 'shards', 1)
end
-- Written last: the stats hash is what marks the sale as initialised.
rcall('HSET', statsKey, 'sold', purchases, 'held', live, 'c_ok', checkoutsOk, 'c_rej', checkoutsRejected, 'p_ok', purchasesOk, 'p_rej', purchasesRejected, 'next_exp', ms(nextExp))
return 1
