--[[
  shard_hold: the first step of checkouts in a sale split into shards, on the shard of their items
  (src/redis/shards.ts describes the whole decision). Everything that does not depend on the user's
  other holds is decided here, in one call, exactly as lua/checkout.lua decides it; a request that
  finds its item free holds it tentatively, and the server then takes the user's slot on the user's
  shard (lua/shard_slot.lua) and settles the hold (lua/shard_settle.lua).

  KEYS[1..6] the shard's keys, as listed in prelude.lua
  ARGV[1] now_ms      Unix ms to decide at; '' uses Redis TIME (production)
  ARGV[2] sale_id     the sale the caller believes is current (KEYS belong to it)
  ARGV[3] period_ms   length of a sale in ms
  ARGV[4] sale_items  items per sale
  ARGV[5] hold_ms     how long a hold lives
  ARGV[6] shards      how many shards the sale is split into
  ARGV[7] shard       this shard: it holds the items i with (i - 1) mod shards = shard
  ARGV[8..] one group of four per request: item_id, user_id, code (fresh, used only for a new hold), flags:
            'f' every other shard is sold out, 'n' some other shard is not (the server asked them),
            'w' do not wait for this user's own tentative hold (answer item_reserved)

  Returns {0, now_ms, journal_entry_id ('' if nothing was decided), then per request: status, code, expires_ms}.
  Decided, counted and journaled as in checkout.lua: 1 repeated, -1 unknown_item, -2 sold_out,
  -3 item_sold, -4 item_reserved. Not decided yet, not journaled:
     2  tentative    the item is held tentatively under the request's code until expires_ms
   -12  shard_full   every item of this shard is sold: call again with flag f or n
   -13  in_flight    the user's own tentative hold of this item (its code) is being settled: call again once it is
  or, deciding nothing: {-10, current_sale_id} wrong_sale, {-11} not_ready, as in checkout.lua.
]]
local now, saleId, periodMs = clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local saleItems, holdMs, shards, shard = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local firstRequest = 8
local sold, nextExp, undecided = openSale(now, saleId, periodMs)
if undecided then return undecided end
local shardItems = 0
if shard < saleItems then shardItems = math.floor((saleItems - 1 - shard) / shards) + 1 end
local nowText, expiresText = ms(now), ms(now + holdMs)
local out, journal, accepted, rejected, tentative = {0, now, ''}, {}, 0, 0, 0
local has = function(flags, flag) return string.find(flags, flag, 1, true) ~= nil end

for i = firstRequest, #ARGV, 4 do
  local item, user, newCode, flags = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local status, code, expiry = 0, '', ''
  if item < 1 or item > saleItems then
    status = -1 -- unknown_item
  elseif sold >= shardItems then
    -- Every item here is sold; the whole sale is sold out only if every other shard is too.
    if has(flags, 'f') then status = -2 elseif has(flags, 'n') then status = -3 else status = -12 end
  else
    local state = rcall('HGET', itemsKey, item)
    if not state then
      status, code, expiry = 2, newCode, expiresText -- tentative
      rcall('HSET', itemsKey, item, 't|' .. expiresText .. '|' .. user .. '|' .. code)
      rcall('HSET', codesKey, code, 't|' .. item .. '|' .. expiresText .. '|' .. user)
      rcall('ZADD', expKey, expiresText, code)
      tentative = tentative + 1
    elseif string.sub(state, 1, 1) == 's' then
      status = -3 -- item_sold
    else
      local kind, heldUntil, holder, heldCode = string.match(state, '^([ht])|(%d+)|([^|]+)|(.+)$')
      if holder ~= user then
        status = -4 -- item_reserved
      elseif kind == 'h' then
        status, code, expiry = 1, heldCode, heldUntil -- repeated
      elseif has(flags, 'w') then
        status = -4 -- item_reserved: held by this user's own checkout, still being decided elsewhere
      else
        status, code = -13, heldCode -- in_flight
      end
    end
  end
  if status == 1 or (status <= -1 and status >= -4) then
    if status >= 0 then accepted = accepted + 1 else rejected = rejected + 1 end
    journal[#journal + 1] = ms(item) .. ' ' .. user .. ' ' .. status .. ' ' .. code .. ' ' .. expiry
  end
  out[#out + 1] = status
  out[#out + 1] = code
  out[#out + 1] = tonumber(expiry) or 0
end

if #journal > 0 then out[3] = rcall('XADD', logKey, '*', 'e', 'c', 't', nowText, 'd', table.concat(journal, '\n')) end
if accepted > 0 then rcall('HINCRBY', statsKey, 'c_ok', accepted) end
if rejected > 0 then rcall('HINCRBY', statsKey, 'c_rej', rejected) end
if tentative > 0 and nextExp == 0 then rcall('HSET', statsKey, 'next_exp', expiresText) end
return out
