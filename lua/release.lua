--[[
  release: return a part's expired holds to stock.

  Every decision script sweeps first, so this only keeps an idle sale's counters, /items and memory
  current; it runs on a timer.

  KEYS[1..8] the part's keys, as listed in prelude.lua
  ARGV[1] now_ms     Unix ms; '' uses Redis TIME (production)

  Returns the number of holds released (0 if the part is not initialised).
]]
local st = readState()
if not st then return 0 end
return sweep(st, clock(ARGV[1]))
