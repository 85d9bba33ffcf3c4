--[[
  settings: an operator's change to a sale (pause, resume, end, its limits, an item's stock), applied to one part.

  The durable store holds the truth; this brings the part in line with it. A change that only tightens (pause,
  end, a lower stock or limit) is applied first with mode 'restrict', before the store has it, so that nothing
  it forbids is decided while it spreads; then 'apply' writes the definition the store committed, with its
  revision. A part left `dirty` by a 'restrict' whose 'apply' never came is put right by the next instance that
  compares it with the store (src/redis/live.ts), which then names every item whose stock may differ.

  KEYS[1..8] the part's keys, as listed in prelude.lua
  ARGV[1] now_ms     Unix ms; '' uses Redis TIME (production)
  ARGV[2] sale_id    the sale
  ARGV[3] mode       'restrict' | 'apply'
  ARGV[4] settings   "starts|closes|paused|limit|hold|rev"; closes may be 'now' (an end: the earlier of its
                     close and now). 'restrict' takes only what tightens (paused, an earlier close, a lower
                     limit) and keeps the revision; 'apply' takes all of it unless the part has a newer revision
  ARGV[5] items      "id:stock:per_user:ix" of the part's items whose stock is set (for 'restrict': lowered),
                     joined by ","; an item not touched yet gets its record now
  ARGV[6] units      the part's units in all once these stocks are set (the definition's sum)

  Returns {0, now_ms} done; {1, now_ms} 'apply' of a revision older than the part's: nothing changed;
  {-20, item_id, unit}: the item's stock cannot go below `unit`, which is sold or held: nothing changed;
  {-11}: the part is not initialised (it will be initialised from the store, change included).
]]
local now = clock(ARGV[1])
local mode = ARGV[3]
local st = readState()
if not st then return {-11} end
local starts, closes, paused, limit, hold, rev = string.match(ARGV[4], '^(%d+)|(%w+)|(%d)|(%d+)|(%d+)|(%d+)$')
if closes == 'now' then closes = math.min(st.closes, now) else closes = tonumber(closes) end
local current = rcall('HMGET', stateKey, 'rev', 'paused', 'limit')
if mode == 'apply' and tonumber(rev) < tonumber(current[1]) then return {1, ms(now)} end

-- Stocks first: a lower one is refused below the highest unit in use (with 'restrict'), or held there (with 'apply').
local changes, clamped, named = {}, 0, {}
for id, stock, per, ix in string.gmatch(ARGV[5], '(%d+):(%d+):(%d+):(%d+)') do
  local item, wanted = tonumber(id), tonumber(stock)
  local it = getItem(item, nil, st, ix .. '|' .. wanted .. '|' .. per)
  local floor = highestInUse(item, it)
  if wanted < floor then
    if mode == 'restrict' then return {-20, item, floor} end
    clamped = clamped + floor - wanted
    wanted = floor
  end
  changes[#changes + 1] = {item, it, wanted}
  named[#named + 1] = id
end
for _, change in ipairs(changes) do
  local item, it, wanted = change[1], change[2], change[3]
  if wanted < it.stock then
    local base = item * unitSpan
    rcall('ZREMRANGEBYSCORE', freeKey, base + wanted + 1, base + unitSpan - 1)
    if it.next > wanted + 1 then it.next = wanted + 1 end
  end
  it.stock = wanted
  putItem(item, it)
end
rcall('HSET', stateKey, 'units', tonumber(ARGV[6]) + clamped)

if mode == 'restrict' then
  local tighter = {'dirty', 1, 'closes', ms(math.min(st.closes, closes)), 'limit', math.min(tonumber(current[3]), tonumber(limit))}
  if paused == '1' then tighter[#tighter + 1] = 'paused'; tighter[#tighter + 1] = 1 end
  rcall('HSET', stateKey, unpack(tighter))
else
  rcall('HSET', stateKey, 'starts', starts, 'closes', ms(closes), 'paused', paused, 'limit', limit, 'hold', hold, 'rev', rev, 'dirty', 0)
end
return {0, ms(now)}
