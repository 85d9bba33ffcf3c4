--[[
  release: return a sale's expired holds to stock.

  Every decision script sweeps first, so this only keeps an idle sale's
  counters and memory current; it runs on a timer.

  KEYS[1..6] the sale's keys, as listed in sweep.lua
  ARGV[1] now_ms   Unix ms; '' uses Redis TIME (production)

  Returns the number of holds released (0 if the sale is not initialised).
]]
local nextExp = rcall('HGET', KEYS[5], 'next_exp')
if not nextExp then return 0 end
local released = sweep(clock(ARGV[1]), tonumber(nextExp))
return released
