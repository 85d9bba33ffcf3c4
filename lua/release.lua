--[[
  release: return a sale's expired holds to stock.

  Every decision script sweeps first, so this only keeps an idle sale's
  counters and memory current; it runs on a timer.

  KEYS[1..8] the sale's keys, as listed in sweep.lua
  ARGV[1] now_ms   Unix ms; '' uses Redis TIME (production)

  Returns the number of holds released (0 if the sale is not initialised).
]]
if rcall('EXISTS', KEYS[1]) == 0 then return 0 end
return sweep(clock(ARGV[1]))
