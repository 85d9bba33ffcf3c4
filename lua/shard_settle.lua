--[[
  shard_settle: the last step of checkouts in a split sale, on the items' shard: a tentative hold whose user
  got a slot becomes a hold (reserved), one refused by the user's limit goes back to stock. Both are decided
  now, counted and journaled as lua/checkout.lua does; the time of the decision is that of the tentative hold.

  KEYS[1..8] the item shard's keys, as listed in prelude.lua
  ARGV[1] now_ms     the time the tentative holds were made at (shard_hold's reply)
  ARGV[2] sale_id
  ARGV[3..] one group of four per request: item_id, user_id, code, verdict (0 slot taken, -5 user_limit,
            -16 abandoned: the slot step failed, so the request is answered "try again")

  Returns {0, journal_entry_id ('' if nothing was decided), then per request: status}: 0 reserved,
  -5 user_limit, -15 lost: the tentative hold is gone (the shard was rebuilt meanwhile), nothing decided;
  the server frees the slot and decides the request again; -16 abandoned: the tentative hold went back to
  stock, nothing decided. {-11}: not initialised.
]]
local nowText = ARGV[1]
local firstRequest = 3
local st = readState()
if not st then return {-11} end
local out, journal, reserved, refused = {0, ''}, {}, 0, 0
for i = firstRequest, #ARGV, 4 do
  local item, user, code, verdict = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local kind, heldItem, unit, expires = getCode(code)
  local tentative = kind == 't' and heldItem == item
  local status = verdict
  if verdict == 0 and not tentative then
    status = -15 -- lost
  elseif verdict == 0 then
    putCode(code, 'h', item, unit, expires, user)
    reserved = reserved + 1
    journal[#journal + 1] = item .. ' ' .. user .. ' 0 ' .. code .. ' ' .. ms(expires) .. ' ' .. unit
  else
    -- user_limit or abandoned: the tentative hold, if still there, goes back to stock.
    if tentative then endHold(st, code, 't', item, unit, expires, user) end
    if verdict == -5 then
      refused = refused + 1
      journal[#journal + 1] = item .. ' ' .. user .. ' -5   '
    end
  end
  out[#out + 1] = status
end
if #journal > 0 then out[2] = rcall('XADD', logKey, '*', 'e', 'c', 't', nowText, 'd', table.concat(journal, '\n')) end
if reserved > 0 then
  rcall('HINCRBY', stateKey, 'c_ok', reserved)
  rcall('HINCRBY', stateKey, 'held', reserved)
end
if refused > 0 then rcall('HINCRBY', stateKey, 'c_rej', refused) end
return out
