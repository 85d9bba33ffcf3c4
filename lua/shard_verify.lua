--[[
  shard_verify: on an item's shard, after releasing what has expired, says what became of holds.

  KEYS[1..8] the item shard's keys, as listed in prelude.lua
  ARGV[1] now_ms   '' uses Redis TIME
  ARGV[2] sale_id
  ARGV[3..] the codes

  Returns {0, then per code: 'bought', 'live' (held or tentative), or 'ended' (unbought)}, or {-11}
  if the shard is not initialised (rebuild it, then call again). Once a code has ended it stays so: a
  purchase needs a live hold, and the sweep here has removed every hold expired by now.
]]
local firstCode = 3
local st = readState()
if not st then return {-11} end
sweep(st, clock(ARGV[1]))
local out = {0}
for i = firstCode, #ARGV do
  local kind = getCode(ARGV[i])
  out[#out + 1] = kind == 'p' and 'bought' or (kind == 'h' or kind == 't') and 'live' or 'ended'
end
return out
