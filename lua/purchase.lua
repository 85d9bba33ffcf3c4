--[[
  purchase: turn a live hold into a sale, at most once per code.

  KEYS[1..6] the keys of the sale the code was issued in, as listed in sweep.lua
  ARGV[1] now_ms      Unix ms to decide at; '' uses Redis TIME (production)
  ARGV[2] sale_id     the sale named in the code
  ARGV[3] period_ms   length of a sale in ms
  ARGV[4] code
  ARGV[5] hold_ms     how long a hold lives (bounds how long a past sale can still sell)

  Returns:
    {0, item_id, user_id, purchased_ms}   purchased: the item is sold to the holder
    {-6}    code_not_found   never issued, or its hold expired
    {-7}    code_used        already purchased with this code
    {-11}   not_ready        the sale may still have live holds but is not initialised:
                             rebuild it, then call again
  The user's count is unchanged: the hold already counted against the limit.
  stats.next_exp stays a lower bound when a hold leaves by purchase, so it is not updated.
  Decided outcomes are appended to the log stream and counted in stats.
]]
local nowArg, saleId, periodMs, code, holdMs = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])

local now = clock(nowArg)
if saleId > math.floor(now / periodMs) then return {-6} end
local stats = rcall('HMGET', KEYS[5], 'sold', 'next_exp')
if not stats[1] then
  if now < (saleId + 1) * periodMs + holdMs then return {-11} end
  return {-6}
end
sweep(now, tonumber(stats[2]))

local state = rcall('HGET', KEYS[2], code)
local result, outcome, item, user
if not state then
  result, outcome = {-6}, 'code_not_found'
else
  local kind
  kind, item, user = string.match(state, '^(%a)|(%d+)|%d+|(.+)$')
  if kind == 'p' then
    result, outcome = {-7}, 'code_used'
  else
    rcall('HSET', KEYS[2], code, 'p|' .. item .. '|' .. ms(now) .. '|' .. user)
    rcall('HSET', KEYS[1], item, 's|' .. user .. '|' .. code)
    rcall('ZREM', KEYS[4], code)
    rcall('HINCRBY', KEYS[5], 'held', -1)
    rcall('HINCRBY', KEYS[5], 'sold', 1)
    result, outcome = {0, tonumber(item), user, now}, 'purchased'
  end
end

rcall('HINCRBY', KEYS[5], result[1] == 0 and 'p_ok' or 'p_rej', 1)
rcall('XADD', KEYS[6], '*', 'e', 'p', 'k', code, 'o', outcome, 'u', user or '', 'i', item or '', 't', ms(now))
return result
