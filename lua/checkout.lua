--[[
  checkout: hold items of the current sale, for a batch of requests decided one after another.

  The server sends the checkouts that arrive together in one call; each is
  decided exactly as if it had been sent alone, in the order given.

  KEYS[1..6] the sale's keys, as listed in prelude.lua
  ARGV[1] now_ms      Unix ms to decide at; '' uses Redis TIME (production)
  ARGV[2] sale_id     the sale the caller believes is current (KEYS belong to it)
  ARGV[3] period_ms   length of a sale in ms
  ARGV[4] sale_items  items per sale
  ARGV[5] user_limit  purchases plus live holds allowed per user
  ARGV[6] hold_ms     how long a hold lives
  ARGV[7..] one triple per request: item_id (integer as requested, may be out of range),
            user_id, code (fresh and random, used only if a new hold is granted)

  Returns {0, now_ms, journal_entry_id, then per request: status, code, expires_ms}; status
  (the numbers of src/sale/outcomes.ts):
     0 reserved        a new hold was granted with the request's code
     1 repeated        this user already holds this item: its code and expiry
    -1 unknown_item    item_id outside 1..sale_items
    -2 sold_out        every item of the sale is sold
    -3 item_sold       this item is sold
    -4 item_reserved   another user holds this item
    -5 user_limit      the user's purchases plus live holds reach user_limit
  or, deciding nothing:
    {-10, current_sale_id}   wrong_sale: call again with that sale's keys
    {-11}                    not_ready: the sale is not initialised; rebuild it, then call again
  Every decided request is counted in stats, and the batch is appended to the
  journal as one entry (its format: src/redis/journal.ts).
]]
local now, saleId, periodMs = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local saleItems, userLimit, holdMs = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local firstRequest = 7
local sold, nextExp, undecided = openSale(now, saleId, periodMs)
if undecided then return undecided end
local nowText, expires = ms(now), now + holdMs
local expiresText = ms(expires)
local out, journal, accepted, rejected, granted = {0, now, ''}, {}, 0, 0, 0

for i = firstRequest, #ARGV, 3 do
  local item, user, newCode = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  local status, code, expiry = 0, '', ''
  if item < 1 or item > saleItems then
    status = -1 -- unknown_item
  elseif sold >= saleItems then
    status = -2 -- sold_out
  else
    local state = rcall('HGET', itemsKey, item)
    if state then
      if string.sub(state, 1, 1) == 's' then
        status = -3 -- item_sold
      else
        local heldUntil, holder, heldCode = string.match(state, '^h|(%d+)|([^|]+)|(.+)$')
        if holder == user then
          status, code, expiry = 1, heldCode, heldUntil -- repeated
        else
          status = -4 -- item_reserved
        end
      end
    elseif tonumber(rcall('HGET', usersKey, user) or '0') >= userLimit then
      status = -5 -- user_limit
    else
      code, expiry = newCode, expiresText
      rcall('HSET', itemsKey, item, 'h|' .. expiresText .. '|' .. user .. '|' .. code)
      rcall('HSET', codesKey, code, 'h|' .. item .. '|' .. expiresText .. '|' .. user)
      rcall('ZADD', expKey, expiresText, code)
      rcall('HINCRBY', usersKey, user, 1)
      granted = granted + 1
    end
  end
  if status >= 0 then accepted = accepted + 1 else rejected = rejected + 1 end
  journal[#journal + 1] = ms(item) .. ' ' .. user .. ' ' .. status .. ' ' .. code .. ' ' .. expiry
  out[#out + 1] = status
  out[#out + 1] = code
  out[#out + 1] = tonumber(expiry) or 0
end

out[3] = rcall('XADD', logKey, '*', 'e', 'c', 't', nowText, 'd', table.concat(journal, '\n'))
if accepted > 0 then rcall('HINCRBY', statsKey, 'c_ok', accepted) end
if rejected > 0 then rcall('HINCRBY', statsKey, 'c_rej', rejected) end
if granted > 0 then
  rcall('HINCRBY', statsKey, 'held', granted)
  if nextExp == 0 then rcall('HSET', statsKey, 'next_exp', expiresText) end
end
return out
