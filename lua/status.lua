--[[
  status: the counters of the current sale, after releasing expired holds.

  KEYS[1..6] the sale's keys, as listed in prelude.lua
  ARGV[1] now_ms      Unix ms; '' uses Redis TIME (production)
  ARGV[2] sale_id     the sale the caller believes is current
  ARGV[3] period_ms   length of a sale in ms

  Returns:
    {0, now_ms, sold, held, checkouts_ok, checkouts_rejected, purchases_ok, purchases_rejected}
    {-10, current_sale_id}   wrong_sale: call again with that sale's keys
    {-11}                    not_ready: rebuild the sale, then call again
]]
local now, saleId, periodMs = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local current = math.floor(now / periodMs)
if current ~= saleId then return {-10, ms(current)} end
local nextExp = rcall('HGET', statsKey, 'next_exp')
if not nextExp then return {-11} end
sweep(now, tonumber(nextExp))
local s = rcall('HMGET', statsKey, 'sold', 'held', 'c_ok', 'c_rej', 'p_ok', 'p_rej')
return {0, now, tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4]), tonumber(s[5]), tonumber(s[6])}
