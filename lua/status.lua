--[[
  status: a part's counters, after releasing expired holds.

  KEYS[1..8] the part's keys, as listed in prelude.lua
  ARGV[1] now_ms      Unix ms; '' uses Redis TIME (production)

  Returns:
    {0, now_ms, sold, held, units, checkouts_ok, checkouts_rejected, purchases_ok, purchases_rejected, paused, closes_ms, rev}
    {-11}   not_ready: rebuild the part, then call again
]]
local now = clock(ARGV[1])
local st = readState()
if not st then return {-11} end
sweep(st, now)
local s = rcall('HMGET', stateKey, 'sold', 'held', 'units', 'c_ok', 'c_rej', 'p_ok', 'p_rej', 'paused', 'closes', 'rev')
local out = {0, now}
for i = 1, #s do out[#out + 1] = tonumber(s[i]) end
return out
