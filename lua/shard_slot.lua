--[[
  shard_slot: the second step of a checkout in a split sale, on the user's shard: takes a slot of the
  sale's per-user limit for a tentative hold (lua/shard_hold.lua).

  A user shard's users hash maps user id -> "n|code:expires_ms|code:expires_ms...": n counts the user's
  purchases plus holds, and the listed codes are the holds among them not yet known to be bought or
  over. This shard does not see the item shards' expiries or purchases, so a listed hold past its
  expiry may have been bought (still counted) or not (its slot is free). It is asked only when it
  matters: a user at the limit with such holds is not refused until the server has asked their item
  shards (lua/shard_verify.lua) and recorded the answers here (lua/shard_unslot.lua).

  KEYS[1..8] the user shard's keys, as listed in prelude.lua
  ARGV[1..2] now_ms, sale_id (unused: each request brings the time of its hold; the limit is the sale's, in state)
  ARGV[3..] one group of five per request: user_id, code and expires_ms of its tentative hold, the
            time the hold was made at, and 'asked' when the user's expired holds were asked about already
            (what is still listed is live: refuse instead of asking again), else ''

  Returns {0, then per request: status, codes}; status:
     0  the slot is taken (or, for a hold this shard already counts, kept: see below)
    -5  user_limit: purchases plus live holds reach the limit
   -14  ask: at the limit, but the holds in codes (comma-separated) are past their expiry
  or {-11}: not_ready, the shard is not initialised.
  A hold already listed was counted when this shard was rebuilt from the item shards while the hold was
  still tentative (redis/shards.ts): it is decided again, against the user's other purchases and holds.
]]
local firstRequest = 3
local st = readState()
if not st then return {-11} end
local userLimit = st.limit

local out = {0}
for i = firstRequest, #ARGV, 5 do
  local user, code, expires, now, alreadyAsked = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  local value = rcall('HGET', usersKey, user) or '0'
  local n, listed, kept, expired = slotsOf(value, code, now)
  local status, asked = 0, ''
  if listed then
    if n - 1 >= userLimit and #expired > 0 and alreadyAsked ~= 'asked' then
      status, asked = -14, table.concat(expired, ',')
    elseif n - 1 >= userLimit then
      status, n = -5, n - 1
      value = n .. table.concat(kept)
    end
  elseif n >= userLimit then
    if #expired > 0 and alreadyAsked ~= 'asked' then status, asked = -14, table.concat(expired, ',') else status = -5 end
  else
    value = (n + 1) .. string.sub(value, #tostring(n) + 1) .. '|' .. code .. ':' .. expires
  end
  if value == '0' then rcall('HDEL', usersKey, user) else rcall('HSET', usersKey, user, value) end
  out[#out + 1] = status
  out[#out + 1] = asked
end
return out
