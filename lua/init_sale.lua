--[[
  init_sale: initialise a part of a sale once, empty or from what the durable store kept.

  Used for a sale that has not started yet (empty) and to rebuild a part after Redis lost it (or holds a layout
  of an earlier version). Does nothing if the part is already initialised, so several instances may race to
  prepare or rebuild the same sale. A rebuild follows src/sale/rules.ts's restoreSale: a unit kept as sold
  stays sold, and of two holds of one unit the later one is kept.

  KEYS[1..8] the part's keys, as listed in prelude.lua
  ARGV[1]  now_ms     Unix ms; '' uses Redis TIME (production)
  ARGV[2]  sale_id    the sale (KEYS belong to it)
  ARGV[3]  mode       'empty': only before the sale starts, since nothing can have happened in it yet;
                      'rebuild': from the snapshot that follows
  ARGV[4]  settings   "starts|closes|paused|limit|hold|rev" (ms, ms, 0/1, units per user, ms, revision)
  ARGV[5]  avail      what is available of each of the part's items, as the avail key keeps it (prelude.lua):
                      each item's stock, a 32-bit big-endian number at its ix, built by the server
  ARGV[6]  units      the part's units in all (the sum of those stocks), then "|n|stock|per_user" for a sale
                      whose items are alike (ids 1..n: requests name them with the spec ''), else "|0|0|0"
  ARGV[7]  split      "shards|shard": 1|0 for a whole sale; a shard counts its users from the section below
  ARGV[8..11] counters: checkouts_ok, checkouts_rejected, purchases_ok, purchases_rejected
  ARGV[12] P, the number of units sold, followed by P groups of item_id, spec (its definition, for its record:
           prelude.lua), unit, user_id, code, purchased_ms
  then     H, the number of live holds (by expiry), followed by H groups of item_id, spec, unit, user_id, code,
           expires_ms
  then     (a shard of a split sale) U, the number of users, followed by U pairs of user_id, the users hash's value

  Item records are made only for the items the snapshot names, so an empty part costs the same whatever its
  number of items.

  Returns:
     1  initialised
     0  already initialised: nothing changed
    -1  refused: 'empty' for a sale that has already started
]]
local mode = ARGV[3]
if rcall('HGET', stateKey, 'v') == layout then return 0 end
local now = clock(ARGV[1])
local starts, closes, paused, limit, hold, rev = string.match(ARGV[4], '^(%d+)|(%d+)|(%d)|(%d+)|(%d+)|(%d+)$')
if mode == 'empty' and now >= tonumber(starts) then return -1 end
local shards, shard = string.match(ARGV[7], '^(%d+)|(%d+)$')
local units, n, dstock, dper = string.match(ARGV[6], '^(%d+)|(%d+)|(%d+)|(%d+)$')
shards, shard, n, dstock, dper = tonumber(shards), tonumber(shard), tonumber(n), tonumber(dstock), tonumber(dper)
-- Everything of an earlier life of this part goes, the stats of an earlier layout included; the journal stays.
rcall('DEL', itemsKey, codesKey, usersKey, expKey, stateKey, freeKey, availKey)
local st = {shards = shards, shard = shard, split = shards > 1, n = n, dstock = dstock, dper = dper}
rcall('SET', availKey, ARGV[5])

-- What the store kept: units sold, then the live holds.
local used, touched, holdings = {}, {}, {}
local function use(item, unit)
  used[item] = used[item] or {}
  if used[item][unit] then return false end
  used[item][unit] = true
  return true
end
local function countHolding(item, user, code)
  local key = item .. '|' .. user
  local h = holdings[key] or {count = 0, code = ''}
  h.count = h.count + 1
  if code then h.code = code end
  holdings[key] = h
  if not st.split then rcall('HINCRBY', usersKey, user, 1) end
end
-- The item of the group at ARGV[j + 1]: its record so far, or a new one from the definition the group names.
local function itemAt(j)
  local item = tonumber(ARGV[j + 1])
  return item, touched[item] or getItem(item, nil, st, ARGV[j + 2])
end
local i = 12
local sold, held, nextExp = 0, 0, 0
for _ = 1, tonumber(ARGV[i]) do
  local item, it = itemAt(i)
  local unit, user, code, at = tonumber(ARGV[i + 3]), ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  if it and use(item, unit) then
    touched[item] = it
    it.sold = it.sold + 1
    putCode(code, 'p', item, unit, tonumber(at), user)
    countHolding(item, user, nil)
    sold = sold + 1
  end
  i = i + 6
end
i = i + 1
local latest = {}
for g = 1, tonumber(ARGV[i]) do
  local j = i + (g - 1) * 6
  latest[ARGV[j + 1] .. ':' .. ARGV[j + 3]] = g
end
for g = 1, tonumber(ARGV[i]) do
  local j = i + (g - 1) * 6
  local item, it = itemAt(j)
  local unit, user, code, expires = tonumber(ARGV[j + 3]), ARGV[j + 4], ARGV[j + 5], tonumber(ARGV[j + 6])
  if it and latest[ARGV[j + 1] .. ':' .. ARGV[j + 3]] == g and use(item, unit) then
    touched[item] = it
    it.held = it.held + 1
    it.last = user
    putCode(code, 'h', item, unit, expires, user)
    rcall('ZADD', expKey, expires, code)
    countHolding(item, user, code)
    held = held + 1
    if nextExp == 0 or expires < nextExp then nextExp = expires end
  end
end
i = i + 1 + tonumber(ARGV[i]) * 6

-- Units below the highest one in use that are not in use are free again.
for item, it in pairs(touched) do
  local highest = 0
  for unit in pairs(used[item]) do if unit > highest then highest = unit end end
  it.next = highest + 1
  for unit = 1, highest do if not used[item][unit] then returnUnit(item, unit) end end
  putItem(item, it)
end
for key, h in pairs(holdings) do rcall('HSET', itemsKey, key, h.count .. '|' .. h.code) end

if st.split then
  for _ = 1, tonumber(ARGV[i]) do
    rcall('HSET', usersKey, ARGV[i + 1], ARGV[i + 2])
    i = i + 2
  end
end
-- Written last: the state hash, with the layout version, is what marks the part as initialised.
rcall('HSET', stateKey, 'starts', starts, 'closes', closes, 'paused', paused, 'limit', limit, 'hold', hold, 'rev', rev,
  'shards', shards, 'shard', shard, 'n', n, 'dstock', dstock, 'dper', dper, 'sold', sold, 'held', held, 'units', units, 'c_ok', ARGV[8], 'c_rej', ARGV[9], 'p_ok', ARGV[10], 'p_rej', ARGV[11],
  'next_exp', ms(nextExp), 'rebuilt', mode == 'rebuild' and ms(now) or '0', 'v', layout)
return 1
