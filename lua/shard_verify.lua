--[[
  shard_verify: on an item's shard, after releasing what has expired, says what became of holds.

  KEYS[1..6] the item shard's keys, as listed in prelude.lua
  ARGV[1..3] now_ms ('' uses Redis TIME), sale_id, period_ms
  ARGV[4..] the codes

  Returns {0, then per code: 'p' bought, 'l' still live (held or tentative), 'r' ended unbought}, or {-11}
  if the shard is not initialised (rebuild it, then call again). Once a code is 'r' it stays so: a
  purchase needs a live hold, and the sweep here has removed every hold expired by now.
]]
local firstCode = 4
local nextExp = rcall('HGET', statsKey, 'next_exp')
if not nextExp then return {-11} end
sweep(clock(ARGV[1]), tonumber(nextExp))
local out = {0}
for i = firstCode, #ARGV do
  local kind = string.sub(rcall('HGET', codesKey, ARGV[i]) or 'r', 1, 1)
  out[#out + 1] = kind == 'p' and 'p' or kind == 'r' and 'r' or 'l'
end
return out
