--[[
  release: return a sale's expired holds to stock.

  Every decision script sweeps first, so this only keeps an idle sale's
  counters and memory current; it runs on a timer.

  KEYS[1..6] the sale's keys, as listed in prelude.lua
  ARGV[1] now_ms     Unix ms; '' uses Redis TIME (production)
  ARGV[2] sale_id    the sale the keys belong to
  ARGV[3] period_ms  length of a sale in ms (unused: kept for the common ARGV order)

  Returns the number of holds released (0 if the sale is not initialised).
]]
local nowArg = ARGV[1]
local nextExp = rcall('HGET', statsKey, 'next_exp')
if not nextExp then return 0 end
local released = sweep(clock(nowArg), tonumber(nextExp))
return released
