--[[
  checkout: hold units of the current sale's items, for a batch of requests decided one after another.

  The server sends the checkouts that arrive together in one call; each is decided exactly as if it had
  been sent alone, in the order given, as src/sale/rules.ts decides it.

  KEYS[1..8] the sale's keys, as listed in prelude.lua
  ARGV[1] now_ms      Unix ms to decide at; '' uses Redis TIME (production)
  ARGV[2] sale_id     the sale the keys belong to
  ARGV[3] specs       'named': each request names its item's definition; 'alike': the sale's items are alike
                      (the state has their definition), so requests name none (the spec '')
  ARGV[4..] one group per request: item_id (as requested), with 'named' its definition (spec: see prelude.lua),
            user_id, code (fresh and random, used only if a new hold is granted)

  Returns {0, now_ms, journal_entry_id, then per request: status, and for a status of 0 or 1 its code,
  expires_ms and unit}; status (the numbers of src/sale/outcomes.ts), the first that applies:
    -1 unknown_item    the sale has no such item
     1 repeated        this user holds a live unit of this item: its code, expiry and unit
    -2 sold_out        every unit of the sale is sold
    -8 sale_paused     an operator paused the sale
    -3 item_sold       every unit of this item is sold
    -4 item_reserved   every unsold unit of this item is held by others
    -5 user_limit      the user's purchases plus live holds reach the sale's limit, or the item's per_user
     0 reserved        a new hold of the item's lowest free unit, with the request's code
  or, deciding nothing:
    {-10, now_ms}      the sale is not open at now_ms (before its start, or closed)
    {-11}              not_ready: the sale is not initialised; rebuild it, then call again
  Every decided request is counted in state, and the batch is appended to the journal as one entry
  (its format: src/redis/journal.ts).
]]
local now = clock(ARGV[1])
local firstRequest = 4
local named = ARGV[3] == 'named'
local group = named and 4 or 3
local st, undecided = openSale(now)
if not st then return undecided end
local nowText = ms(now)
local expires = now + st.hold
local expiresText = ms(expires)
local out, journal, accepted, rejected, granted = {0, now, ''}, {}, 0, 0, 0

for i = firstRequest, #ARGV, group do
  local itemText, spec, user, newCode = ARGV[i], '', ARGV[i + 1], ARGV[i + 2]
  if named then spec, user, newCode = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3] end
  local item = tonumber(itemText)
  local status, code, expiry, unit = 0, '', '', 0
  local record, stock, sold, held, count, live = itemAndHolding(st, item, spec, user)
  if not stock then
    status = -1 -- unknown_item
  elseif live ~= '' then
    local _, _, heldUnit, heldUntil = getCode(live)
    status, code, expiry, unit = 1, live, ms(heldUntil), heldUnit -- repeated
  elseif st.sold >= st.units then
    status = -2 -- sold_out
  elseif st.paused then
    status = -8 -- sale_paused
  elseif sold >= stock then
    status = -3 -- item_sold
  elseif sold + held >= stock then
    status = -4 -- item_reserved
  else
    local it = getItem(item, record, st, spec)
    if not count then count = getHolding(item, user) end
    if tonumber(rcall('HGET', usersKey, user) or '0') >= st.limit or count >= it.per then
      status = -5 -- user_limit
    else
      unit = takeUnit(item, it)
      code, expiry = newCode, expiresText
      it.held = it.held + 1
      it.last = user
      putItem(item, it)
      putHolding(item, user, count + 1, code)
      putCode(code, 'h', item, unit, expires, user)
      rcall('ZADD', expKey, expiresText, code)
      rcall('HINCRBY', usersKey, user, 1)
      granted = granted + 1
    end
  end
  if status >= 0 then accepted = accepted + 1 else rejected = rejected + 1 end
  journal[#journal + 1] = itemText .. ' ' .. user .. ' ' .. status .. ' ' .. code .. ' ' .. expiry .. ' ' .. (unit > 0 and unit or '')
  out[#out + 1] = status
  if status >= 0 then
    out[#out + 1] = code
    out[#out + 1] = tonumber(expiry)
    out[#out + 1] = unit
  end
end

out[3] = rcall('XADD', logKey, '*', 'e', 'c', 't', nowText, 'd', table.concat(journal, '\n'))
if accepted > 0 then rcall('HINCRBY', stateKey, 'c_ok', accepted) end
if rejected > 0 then rcall('HINCRBY', stateKey, 'c_rej', rejected) end
if granted > 0 then
  rcall('HINCRBY', stateKey, 'held', granted)
  -- A lower bound still: a shortened hold time makes a new hold expire before older ones.
  if st.nextExp == 0 or expires < st.nextExp then rcall('HSET', stateKey, 'next_exp', expiresText) end
end
return out
