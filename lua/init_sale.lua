--[[
  init_sale: initialise a sale once, empty or from what PostgreSQL kept.

  Used for a sale that has not started yet (empty) and to rebuild a sale after
  Redis lost its state. Does nothing if the sale is already initialised, so
  several instances may race to prepare or rebuild the same sale.

  KEYS[1..6] the sale's keys, as listed in sweep.lua
  ARGV[1]    now_ms      Unix ms; '' uses Redis TIME (production)
  ARGV[2]    period_ms   length of a sale in ms
  ARGV[3]    sale_id
  ARGV[4]    mode        'empty': only allowed before the sale starts, since
                         nothing can have happened in it yet; 'rebuild': from
                         the snapshot that follows
  ARGV[5..8] counters: checkouts_ok, checkouts_rejected, purchases_ok, purchases_rejected
  ARGV[9]    P, the number of purchases, followed by P groups of
             item_id, user_id, code, purchased_ms
  then       H, the number of live holds, followed by H groups of
             item_id, user_id, code, expires_ms

  Returns:
     1  initialised
     0  already initialised: nothing changed
    -1  refused: 'empty' for a sale that has already started
]]
if rcall('EXISTS', KEYS[5]) == 1 then return 0 end
local now, periodMs, saleId = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[4] == 'empty' and saleId <= math.floor(now / periodMs) then return -1 end
rcall('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])

local i = 9
local purchases = tonumber(ARGV[i])
for _ = 1, purchases do
  local item, user, code, at = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  rcall('HSET', KEYS[1], item, 's|' .. user .. '|' .. code)
  rcall('HSET', KEYS[2], code, 'p|' .. item .. '|' .. at .. '|' .. user)
  rcall('HINCRBY', KEYS[3], user, 1)
  i = i + 4
end
i = i + 1
local holds, nextExp = tonumber(ARGV[i]), 0
for _ = 1, holds do
  local item, user, code, expires = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  rcall('HSET', KEYS[1], item, 'h|' .. expires .. '|' .. user .. '|' .. code)
  rcall('HSET', KEYS[2], code, 'h|' .. item .. '|' .. expires .. '|' .. user)
  rcall('ZADD', KEYS[4], expires, code)
  rcall('HINCRBY', KEYS[3], user, 1)
  if nextExp == 0 or tonumber(expires) < nextExp then nextExp = tonumber(expires) end
  i = i + 4
end
-- Written last: the stats hash is what marks the sale as initialised.
rcall('HSET', KEYS[5], 'sold', purchases, 'held', holds, 'c_ok', ARGV[5], 'c_rej', ARGV[6], 'p_ok', ARGV[7], 'p_rej', ARGV[8], 'next_exp', ms(nextExp))
return 1
