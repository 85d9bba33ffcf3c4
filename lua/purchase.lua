--[[
  purchase: turn live holds into sales, at most once per code, for a batch of requests decided one after another.

  The server sends the purchases of one part of a sale that arrive together in one call; each is decided
  exactly as if it had been sent alone, in the order given. A live hold always converts, paused sale or not,
  and after the sale closed, until the hold expires.

  KEYS[1..8] the keys of the part the codes were issued in, as listed in prelude.lua
  ARGV[1] now_ms              Unix ms to decide at; '' uses Redis TIME (production)
  ARGV[2] sale_id             the sale named in the codes
  ARGV[3] purchasable_until   ms: until when a hold of this sale can be bought (its close plus the hold time),
                              for a part that is not initialised
  ARGV[4..] the codes

  Returns {0, now_ms, journal_entry_id, then per code: status, item_id, user_id, unit}; status
  (the numbers of src/sale/outcomes.ts):
     0 purchased        the held unit is sold to the holder, at now_ms
    -6 code_not_found   never issued, or its hold expired (or is still tentative: lua/shard_hold.lua)
    -7 code_used        already purchased with this code
  or, for the whole batch:
    {-6}    code_not_found, nothing logged: the sale has not started, or the part was never initialised and
            its holds are long over
    {-11}   not_ready: the part may still have live holds but is not initialised; rebuild it, then call again
  The user's counts are unchanged: the hold already counted against the limits.
  state.next_exp stays a lower bound when a hold leaves by purchase, so it is not updated.
]]
local now = clock(ARGV[1])
local purchasableUntil = tonumber(ARGV[3])
local firstCode = 4
local st = readState()
if not st then
  if now < purchasableUntil then return {-11} end
  return {-6}
end
if now < st.starts then return {-6} end
sweep(st, now)

local nowText = ms(now)
local out, journal, bought, rejected = {0, now, ''}, {}, 0, 0
for i = firstCode, #ARGV do
  local code = ARGV[i]
  local kind, item, unit, _, user = getCode(code)
  local status = -6 -- code_not_found
  if kind == 'p' then
    status = -7 -- code_used
  elseif kind ~= 'h' then
    item, unit, user = nil, nil, nil -- unknown, or a tentative hold (split sale) not answered yet: not a code anyone holds
  else
    status = 0 -- purchased
    putCode(code, 'p', item, unit, now, user)
    rcall('ZREM', expKey, code)
    local it = getItem(item)
    it.held = it.held - 1
    if it.last == user then it.last = '' end
    it.sold = it.sold + 1
    putItem(item, it)
    local count, live = getHolding(item, user)
    if live == code then live = '' end
    putHolding(item, user, count, live)
  end
  if status == 0 then bought = bought + 1 else rejected = rejected + 1 end
  journal[#journal + 1] = code .. ' ' .. status .. ' ' .. (item or '') .. ' ' .. (user or '') .. ' ' .. (unit or '')
  out[#out + 1] = status
  out[#out + 1] = item or 0
  out[#out + 1] = user or ''
  out[#out + 1] = unit or 0
end

out[3] = rcall('XADD', logKey, '*', 'e', 'p', 't', nowText, 'd', table.concat(journal, '\n'))
if bought > 0 then
  rcall('HINCRBY', stateKey, 'held', -bought)
  rcall('HINCRBY', stateKey, 'sold', bought)
  rcall('HINCRBY', stateKey, 'p_ok', bought)
end
if rejected > 0 then rcall('HINCRBY', stateKey, 'p_rej', rejected) end
return out
