--[[
  shard_hold: the first step of checkouts in a sale split into shards, on the shard of their items
  (src/redis/shards.ts describes the whole decision). Everything that does not depend on the user's other
  holds in the sale is decided here, in one call, exactly as lua/checkout.lua decides it, the per-item limit
  included; a request that finds a free unit holds it tentatively, and the server then takes the user's slot
  on the user's shard (lua/shard_slot.lua) and settles the hold (lua/shard_settle.lua).

  KEYS[1..8] the shard's keys, as listed in prelude.lua
  ARGV[1] now_ms      Unix ms to decide at; '' uses Redis TIME (production)
  ARGV[2] sale_id     the sale the keys belong to
  ARGV[3..] one group of six per request: item_id, its definition (spec: see prelude.lua), user_id,
            code (fresh, used only for a new hold), then
            what the server knows of the other shards: 'unknown', 'sold-out' (every other shard is) or 'selling'
            (some other shard is not: it asked them), then 'wait' for this user's own tentative hold of the item
            (answer in_flight) or 'no-wait' (answer item_reserved: it waited once already)

  Returns {0, now_ms, journal_entry_id ('' if nothing was decided), then per request: status, code, expires_ms, unit}.
  Decided, counted and journaled as in checkout.lua: -1 unknown_item, 1 repeated, -2 sold_out, -8 sale_paused,
  -3 item_sold, -4 item_reserved, -5 user_limit (the item's per_user). Not decided yet, not journaled:
     2  tentative    a unit is held tentatively under the request's code until expires_ms
   -12  shard_full   every unit of this shard is sold: call again saying what the other shards are
   -13  in_flight    the user's own tentative hold of this item (its code) is being settled: call again once it is
  or, deciding nothing: {-10, now_ms} not open, {-11} not_ready, as in checkout.lua.
]]
local now = clock(ARGV[1])
local firstRequest = 3
local st, undecided = openSale(now)
if not st then return undecided end
local nowText, expiresText = ms(now), ms(now + st.hold)
local out, journal, accepted, rejected, tentative = {0, now, ''}, {}, 0, 0, 0

for i = firstRequest, #ARGV, 6 do
  local item, user, newCode, others, wait = tonumber(ARGV[i]), ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local status, code, expiry, unit = 0, '', '', 0
  local it = getItem(item, nil, st, ARGV[i + 1])
  local count, live = 0, ''
  if it then count, live = getHolding(item, user) end
  local liveKind, _, liveUnit, liveUntil = nil, nil, nil, nil
  if live ~= '' then liveKind, _, liveUnit, liveUntil = getCode(live) end
  if not it then
    status = -1 -- unknown_item
  elseif liveKind == 'h' then
    status, code, expiry, unit = 1, live, ms(liveUntil), liveUnit -- repeated
  elseif liveKind == 't' and wait == 'no-wait' then
    status = -4 -- item_reserved: held by this user's own checkout, still being decided elsewhere
  elseif liveKind == 't' then
    status, code = -13, live -- in_flight
  elseif st.sold >= st.units then
    -- Every unit here is sold; the whole sale is sold out only if every other shard is too.
    if others == 'sold-out' then status = -2 elseif others == 'unknown' then status = -12 elseif st.paused then status = -8 else status = -3 end
  elseif st.paused then
    status = -8 -- sale_paused
  elseif it.sold >= it.stock then
    status = -3 -- item_sold
  elseif it.sold + it.held >= it.stock then
    status = -4 -- item_reserved
  elseif count >= it.per then
    status = -5 -- user_limit: the item's per_user; the sale's limit is taken on the user's shard
  else
    status, code, expiry = 2, newCode, expiresText -- tentative
    unit = takeUnit(item, it)
    it.held = it.held + 1
    it.last = user
    putItem(item, it)
    putHolding(item, user, count + 1, code)
    putCode(code, 't', item, unit, now + st.hold, user)
    rcall('ZADD', expKey, expiresText, code)
    tentative = tentative + 1
  end
  if status == 1 or (status <= -1 and status >= -8) then
    if status >= 0 then accepted = accepted + 1 else rejected = rejected + 1 end
    journal[#journal + 1] = ms(item) .. ' ' .. user .. ' ' .. status .. ' ' .. code .. ' ' .. expiry .. ' ' .. (status == 1 and unit or '')
  end
  out[#out + 1] = status
  out[#out + 1] = code
  out[#out + 1] = tonumber(expiry) or 0
  out[#out + 1] = unit
end

if #journal > 0 then out[3] = rcall('XADD', logKey, '*', 'e', 'c', 't', nowText, 'd', table.concat(journal, '\n')) end
if accepted > 0 then rcall('HINCRBY', stateKey, 'c_ok', accepted) end
if rejected > 0 then rcall('HINCRBY', stateKey, 'c_rej', rejected) end
-- A lower bound still: a shortened hold time makes a new hold expire before older ones.
if tentative > 0 and (st.nextExp == 0 or now + st.hold < st.nextExp) then rcall('HSET', stateKey, 'next_exp', expiresText) end
return out
