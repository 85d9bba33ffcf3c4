--[[
  shard_unslot: records on the user's shard what became of listed holds (lua/shard_slot.lua): a hold
  that was bought stays counted but is no longer listed; a hold that ended unbought, or whose checkout
  was refused or lost, frees its slot.

  KEYS[1..8] the user shard's keys, as listed in prelude.lua
  ARGV[1..2] now_ms, sale_id (unused: kept for the common ARGV order)
  ARGV[3..] one triple per hold: user_id, code, what became of it ('bought': stays counted; 'ended': slot freed)

  Returns the number of slots freed, or -11 if the shard is not initialised (a rebuild counts from the
  item shards, so nothing is lost by not recording).
]]
local firstHold = 3
if not readState() then return -11 end
local freed = 0
for i = firstHold, #ARGV, 3 do
  local user, code, verdict = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local value = rcall('HGET', usersKey, user)
  if value then
    local n, listed, kept = slotsOf(value, code)
    if listed then
      if verdict == 'ended' then n, freed = n - 1, freed + 1 end
      value = n .. table.concat(kept)
      if value == '0' then rcall('HDEL', usersKey, user) else rcall('HSET', usersKey, user, value) end
    end
  end
end
return freed
