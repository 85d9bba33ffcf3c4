--[[
  purchase: turn live holds into sales, at most once per code, for a batch of requests decided one after another.

  The server sends the purchases of one sale that arrive together in one call;
  each is decided exactly as if it had been sent alone, in the order given.

  KEYS[1..6] the keys of the sale the codes were issued in, as listed in prelude.lua
  ARGV[1] now_ms      Unix ms to decide at; '' uses Redis TIME (production)
  ARGV[2] sale_id     the sale named in the codes
  ARGV[3] period_ms   length of a sale in ms
  ARGV[4] hold_ms     how long a hold lives (bounds how long a past sale can still sell)
  ARGV[5..] the codes

  Returns {0, now_ms, journal_entry_id, then per code: status, item_id, user_id}; status
  (the numbers of src/sale/outcomes.ts):
     0 purchased        the item is sold to the holder, at now_ms
    -6 code_not_found   never issued, or its hold expired (or is still tentative: lua/shard_hold.lua)
    -7 code_used        already purchased with this code
  or, for the whole batch:
    {-6}    code_not_found, nothing logged: the sale has not started, or it was
            never initialised and its holds are long over
    {-11}   not_ready: the sale may still have live holds but is not initialised;
            rebuild it, then call again
  The user's count is unchanged: the hold already counted against the limit.
  stats.next_exp stays a lower bound when a hold leaves by purchase, so it is not updated.
  Decided outcomes are counted in stats, and the batch is appended to the
  journal as one entry (its format: src/redis/journal.ts).
]]
local now, saleId, periodMs = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local holdMs = tonumber(ARGV[4])
local firstCode = 5
if saleId > math.floor(now / periodMs) then return {-6} end
local stats = rcall('HMGET', statsKey, 'sold', 'next_exp')
if not stats[1] then
  if now < (saleId + 1) * periodMs + holdMs then return {-11} end
  return {-6}
end
sweep(now, tonumber(stats[2]))

local nowText = ms(now)
local out, journal, bought, rejected = {0, now, ''}, {}, 0, 0
for i = firstCode, #ARGV do
  local code = ARGV[i]
  local status, item, user = -6, nil, nil -- code_not_found
  local state = rcall('HGET', codesKey, code)
  if state then
    local kind
    kind, item, user = string.match(state, '^(%a)|(%d+)|%d+|(.+)$')
    if kind == 'p' then
      status = -7 -- code_used
    elseif kind ~= 'h' then
      item, user = nil, nil -- a tentative hold (split sale): not answered yet, so not a code anyone holds
    else
      status = 0 -- purchased
      rcall('HSET', codesKey, code, 'p|' .. item .. '|' .. nowText .. '|' .. user)
      rcall('HSET', itemsKey, item, 's|' .. user .. '|' .. code)
      rcall('ZREM', expKey, code)
    end
  end
  if status == 0 then bought = bought + 1 else rejected = rejected + 1 end
  journal[#journal + 1] = code .. ' ' .. status .. ' ' .. (item or '') .. ' ' .. (user or '')
  out[#out + 1] = status
  out[#out + 1] = tonumber(item) or 0
  out[#out + 1] = user or ''
end

out[3] = rcall('XADD', logKey, '*', 'e', 'p', 't', nowText, 'd', table.concat(journal, '\n'))
if bought > 0 then
  rcall('HINCRBY', statsKey, 'held', -bought)
  rcall('HINCRBY', statsKey, 'sold', bought)
  rcall('HINCRBY', statsKey, 'p_ok', bought)
end
if rejected > 0 then rcall('HINCRBY', statsKey, 'p_rej', rejected) end
return out
