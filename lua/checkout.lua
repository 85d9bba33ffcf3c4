--[[
  checkout: hold one item of the current sale for one user.

  KEYS[1..8] the sale's keys, as listed in sweep.lua
  ARGV[1] now_ms      Unix ms to decide at; '' uses Redis TIME (production)
  ARGV[2] sale_id     the sale the caller believes is current (KEYS belong to it)
  ARGV[3] period_ms   length of a sale in ms
  ARGV[4] item_id     integer as requested (may be out of range)
  ARGV[5] user_id
  ARGV[6] code        fresh random code, used only if a new hold is granted
  ARGV[7] sale_items  items per sale
  ARGV[8] user_limit  purchases plus live holds allowed per user
  ARGV[9] hold_ms     how long a hold lives

  Returns {status, code, expires_ms, now_ms}; status:
     0 reserved        a new hold was granted with ARGV[6]
     1 repeated        this user already holds this item: its code and expiry
    -1 unknown_item    item_id outside 1..sale_items
    -2 sold_out        every item of the sale is sold
    -3 item_sold       this item is sold
    -4 item_reserved   another user holds this item
    -5 user_limit      the user's purchases plus live holds reach user_limit
   -10 wrong_sale      {-10, current_sale_id}: call again with that sale's keys
   -11 not_ready       the sale is not initialised: rebuild it, then call again
  Every decided outcome (0..-5) is appended to the log stream and counted in stats.
]]
local nowArg, saleId, periodMs = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local item, user, newCode = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local saleItems, userLimit, holdMs = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])

local now = clock(nowArg)
local current = math.floor(now / periodMs)
if current ~= saleId then return {-10, ms(current)} end
if rcall('EXISTS', KEYS[1]) == 0 then return {-11} end
sweep(now)

local status, outcome, code, expires = 0, 'reserved', '', ''
if item < 1 or item > saleItems then
  status, outcome = -1, 'unknown_item'
elseif tonumber(rcall('HGET', KEYS[7], 'sold') or '0') >= saleItems then
  status, outcome = -2, 'sold_out'
elseif rcall('HEXISTS', KEYS[4], item) == 1 then
  status, outcome = -3, 'item_sold'
else
  local heldCode = rcall('HGET', KEYS[2], item)
  if heldCode then
    local heldExpires, holder = string.match(rcall('HGET', KEYS[3], heldCode), '^h|%d+|(%d+)|(.+)$')
    if holder == user then
      status, outcome, code, expires = 1, 'repeated', heldCode, heldExpires
    else
      status, outcome = -4, 'item_reserved'
    end
  elseif tonumber(rcall('HGET', KEYS[5], user) or '0') >= userLimit then
    status, outcome = -5, 'user_limit'
  else
    code, expires = newCode, ms(now + holdMs)
    rcall('HSET', KEYS[2], item, code)
    rcall('HSET', KEYS[3], code, 'h|' .. item .. '|' .. expires .. '|' .. user)
    rcall('ZADD', KEYS[6], expires, code)
    rcall('HINCRBY', KEYS[5], user, 1)
    rcall('HINCRBY', KEYS[7], 'held', 1)
  end
end

rcall('HINCRBY', KEYS[7], status >= 0 and 'c_ok' or 'c_rej', 1)
rcall('XADD', KEYS[8], '*', 'e', 'c', 'u', user, 'i', ms(item), 'o', outcome, 'k', code, 'x', expires, 't', ms(now))
return {status, code, tonumber(expires) or 0, now}
