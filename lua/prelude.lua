--[[
  prelude: shared by every script, prepended to each one when it is registered.

  Names the keys of one part of a sale (the whole sale, or one shard of a split one: src/redis/keys.ts),
  in the same KEYS order in every script (one hash tag per part, so a call touches one slot), and holds
  the one codec of what each key keeps. ARGV follows one convention: ARGV[1] now_ms, ARGV[2] sale_id,
  then the script's own arguments.

  Keys of one part:
    KEYS[1] items  hash   <item id>          -> item record  "stock|per_user|sold|held|next|ix|last", made when
                                                the item is first touched
                          <item id>|<user>   -> holding      "count|code"
    KEYS[2] codes  hash   code -> code record "h|item|unit|expires_ms|user" (held), "t|..." (held tentatively,
                          split sales), "p|item|unit|purchased_ms|user" (sold)
    KEYS[3] users  hash   user id -> purchases plus live holds (a user shard of a split sale: lua/shard_slot.lua)
    KEYS[4] exp    zset   code of each live hold, scored by its expiry (ms)
    KEYS[5] state  hash   the settings and counters (below); exists once the part is initialised
    KEYS[6] log    stream the journal: one entry per script call (src/redis/journal.ts names its fields)
    KEYS[7] free   zset   units handed out and returned, "<item>:<unit>" scored item * 2^21 + unit, so that an
                          item's lowest returned unit is one ZRANGEBYSCORE
    KEYS[8] avail  string units neither sold nor held, per item, a 32-bit big-endian number at the item's ix
                          (its place among the part's items): what /items reads, whole, once a second

  An item record counts its units: `sold`, `held` (live and tentative holds), `next` (the lowest unit never
  handed out: units below it that are not in use are in `free`). A hold takes the lowest free unit. `last` is
  the user of the latest hold granted, while that hold lives ('' once it ended): with `held` 1 and `last` set,
  the one live hold is theirs, so a refusal of an item of one unit (the common case) never reads a holding. A sale's
  items are the server's (it keeps every sale's definition), and a part holds a record only for the items
  someone touched: a request names its item's definition (below), from which the record is made on first
  touch. So a part of 100,000 items is initialised in one step of constant cost. Once made, the record is the
  truth: an operator's change of a stock writes it (lua/settings.lua) before any request could name another.
  A holding counts one user's purchases plus live holds of one item, and names their live hold's code:
  a user holds at most one unit of an item at a time (checking it out again returns the same code).

  An item's definition, as a request names it (`spec`): "ix|stock|per_user", its place among the part's items
  (the avail key's index), its stock and per-user limit; '' for a sale whose items are alike (ids 1..n, all of
  the stock and per_user the state names: the recurring sale), '-' for an item the sale does not have.

  state fields:
    starts, closes      ms: checkouts are taken from starts until closes (the end, or an operator's end)
    paused              1: checkouts are refused with sale_paused (purchases go on)
    limit, hold         purchases plus live holds per user; ms a hold lives
    rev                 revision of the settings (src/sale/sales.ts): an older one is never applied
    shards, shard       a shard of a split sale: how many, and which (its items are those at ix * shards + shard)
    n, dstock, dper     a sale whose items are alike: ids 1..n, each of dstock units and dper per user (else 0)
    sold, held, units   units sold, units held (not tentative ones), units in all
    c_ok, c_rej, p_ok, p_rej   decisions counted
    next_exp            a lower bound on the earliest expiry (0: no holds), so most calls skip the sweep
    rebuilt             ms when the part was rebuilt from the durable store (0: initialised empty): the audit says so
    v                   the layout version (`layout`, set by src/redis/scripts.ts from keys.ts): a part an
                        earlier version wrote lacks it and is rebuilt
]]
local rcall = redis.call
local itemsKey, codesKey, usersKey, expKey, stateKey, logKey, freeKey, availKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local unitSpan = 2097152 -- 2^21: units per item in the free set's scores (stock is at most 1,000,000)

local function clock(nowArg)
  if nowArg ~= '' then return tonumber(nowArg) end
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n) return string.format('%.0f', n) end

-- The part's settings and counters, read once per call; nil if the part is not initialised (or an earlier layout).
local stateFields = {'starts', 'closes', 'paused', 'limit', 'hold', 'shards', 'shard', 'sold', 'held', 'units', 'next_exp', 'n', 'dstock', 'dper', 'v'}
local function readState()
  local s = rcall('HMGET', stateKey, unpack(stateFields))
  if s[15] ~= layout then return nil end
  return {
    starts = tonumber(s[1]), closes = tonumber(s[2]), paused = s[3] == '1', limit = tonumber(s[4]), hold = tonumber(s[5]),
    shards = tonumber(s[6]), shard = tonumber(s[7]), sold = tonumber(s[8]), held = tonumber(s[9]), units = tonumber(s[10]),
    nextExp = tonumber(s[11]), n = tonumber(s[12]), dstock = tonumber(s[13]), dper = tonumber(s[14]), split = tonumber(s[6]) > 1,
  }
end

-- An item's definition from a request's spec (above): ix, stock, per_user; nil for an item the sale does not have.
local function definition(st, id, spec)
  if spec == '' then
    if id >= 1 and id <= st.n then return math.floor((id - 1) / st.shards), st.dstock, st.dper end
    return nil
  end
  local ix, stock, per = string.match(spec, '^(%d+)|(%d+)|(%d+)$')
  if not ix then return nil end
  return tonumber(ix), tonumber(stock), tonumber(per)
end

-- Item records: the record (`v`, if already read: false if there is none), or, given the request's spec, a new
-- one for an item not touched yet; nil for an item the sale does not have.
local function getItem(id, v, st, spec)
  if v == nil then v = rcall('HGET', itemsKey, id) end
  if v then
    local stock, per, sold, held, nxt, ix, last = string.match(v, '^(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
    return {stock = tonumber(stock), per = tonumber(per), sold = tonumber(sold), held = tonumber(held), next = tonumber(nxt), ix = tonumber(ix), last = last}
  end
  if not spec then return nil end
  local ix, stock, per = definition(st, id, spec)
  if ix then return {stock = stock, per = per, sold = 0, held = 0, next = 1, ix = ix, last = ''} end
  return nil
end

local function putItem(id, it)
  rcall('HSET', itemsKey, id, it.stock .. '|' .. it.per .. '|' .. it.sold .. '|' .. it.held .. '|' .. it.next .. '|' .. it.ix .. '|' .. it.last)
  rcall('BITFIELD', availKey, 'SET', 'u32', '#' .. it.ix, math.max(0, it.stock - it.sold - it.held))
end

-- Holdings: one user's units of one item, and their live hold's code ('' if none). `v`: the holding if already read.
local function getHolding(id, user, v)
  v = v or rcall('HGET', itemsKey, id .. '|' .. user)
  if not v then return 0, '' end
  local count, code = string.match(v, '^(%d+)|(.*)$')
  return tonumber(count), code
end

local function putHolding(id, user, count, code)
  if count <= 0 then rcall('HDEL', itemsKey, id .. '|' .. user) else rcall('HSET', itemsKey, id .. '|' .. user, count .. '|' .. code) end
end

-- Code records.
local function getCode(code)
  local kind, item, unit, t, user = string.match(rcall('HGET', codesKey, code) or '', '^([htp])|(%d+)|(%d+)|(%d+)|(.+)$')
  if not kind then return nil end
  return kind, tonumber(item), tonumber(unit), tonumber(t), user
end

local function putCode(code, kind, item, unit, t, user)
  rcall('HSET', codesKey, code, kind .. '|' .. item .. '|' .. unit .. '|' .. ms(t) .. '|' .. user)
end

-- Units: the lowest free one taken, one given back, the stock lowered.
local function takeUnit(id, it)
  local base = id * unitSpan
  local first = rcall('ZRANGEBYSCORE', freeKey, base, base + unitSpan - 1, 'LIMIT', 0, 1)[1]
  if first then
    rcall('ZREM', freeKey, first)
    return tonumber(string.match(first, ':(%d+)$'))
  end
  local unit = it.next
  it.next = it.next + 1
  return unit
end

local function returnUnit(id, unit)
  rcall('ZADD', freeKey, id * unitSpan + unit, id .. ':' .. unit)
end

-- The highest unit of the item sold or held (0 if none): free units at the top of what was handed out do not count.
local function highestInUse(id, it)
  local unit = it.next - 1
  while unit > 0 and rcall('ZSCORE', freeKey, id .. ':' .. unit) do unit = unit - 1 end
  return unit
end

-- A live or tentative hold that ends unbought (expired, released, or refused at its settling): its unit goes
-- back to stock and its user's counts drop. A user shard of a split sale counts its users itself.
local function endHold(st, code, kind, item, unit, expires, user)
  rcall('HDEL', codesKey, code)
  rcall('ZREM', expKey, code)
  local it = getItem(item)
  if it then
    it.held = it.held - 1
    if it.last == user then it.last = '' end
    if unit <= it.stock then returnUnit(item, unit) end
    putItem(item, it)
  end
  local count, live = getHolding(item, user)
  if live == code then live = '' end
  putHolding(item, user, count - 1, live)
  if not st.split and rcall('HINCRBY', usersKey, user, -1) <= 0 then rcall('HDEL', usersKey, user) end
  -- A tentative hold was never counted as held.
  if kind == 'h' then return 1 end
  return 0
end

-- Releases the holds expired at `now`: the unit is free again, the holder's counts drop, and the code is
-- forgotten (a purchase with it gets code_not_found). Every decision sweeps first, so an expired hold is never
-- visible to a decision, whether or not the background release has run. Returns how many it released.
local function sweep(st, now)
  if st.nextExp == 0 or st.nextExp > now then return 0 end
  local released = 0
  for _, code in ipairs(rcall('ZRANGEBYSCORE', expKey, '-inf', now)) do
    local kind, item, unit, expires, user = getCode(code)
    if kind == 'h' or kind == 't' then released = released + endHold(st, code, kind, item, unit, expires, user) end
  end
  rcall('ZREMRANGEBYSCORE', expKey, '-inf', now)
  local first = rcall('ZRANGE', expKey, 0, 0, 'WITHSCORES')
  st.nextExp = tonumber(first[2] or 0)
  rcall('HSET', stateKey, 'next_exp', ms(st.nextExp))
  if released > 0 then
    rcall('HINCRBY', stateKey, 'held', -released)
    st.held = st.held - released
  end
  return released
end

-- A user's entry on a user shard of a split sale (lua/shard_slot.lua), "n|code:expires_ms|...": n, whether
-- `code` is listed, the other listed holds as "|code:expires_ms" pieces, and those of them expired at `now` if given.
local function slotsOf(value, code, now)
  local n = tonumber(string.match(value, '^(%d+)'))
  local listed, kept, expired = false, {}, {}
  for held, until_ in string.gmatch(value, '|([^:|]+):(%d+)') do
    if held == code then
      listed = true
    else
      kept[#kept + 1] = '|' .. held .. ':' .. until_
      if now and tonumber(until_) <= now then expired[#expired + 1] = held end
    end
  end
  return n, listed, kept, expired
end

-- What a checkout needs of an item and of one user's holding of it: the record (false if not made yet),
-- stock, sold, held (nil for an item the sale does not have), the units the user has of it (nil if not read)
-- and their live hold's code ('' if none). The holding is read only if the user may have a live hold: not
-- when nothing is held, nor when the one live hold is another user's. `spec`: the item's definition as the
-- request names it, for an item not touched yet.
local function itemAndHolding(st, id, spec, user)
  local record = rcall('HGET', itemsKey, id)
  if not record then
    local ix, stock = definition(st, id, spec)
    if not ix then return nil end
    return false, stock, 0, 0, 0, ''
  end
  local stock, sold, held, last = string.match(record, '^(%d+)|%d+|(%d+)|(%d+)|%d+|%d+|(.*)$')
  stock, sold, held = tonumber(stock), tonumber(sold), tonumber(held)
  if held == 0 or (held == 1 and last ~= '' and last ~= user) then return record, stock, sold, held, nil, '' end
  local count, live = getHolding(id, user)
  return record, stock, sold, held, count, live
end

-- The opening of a checkout call: the part must be initialised and open at `now`; then it sweeps.
-- Returns the state, or, when it cannot decide, nil and the reply to give: {-11} not initialised,
-- {-10, now_ms} not open at now (the server finds the sale that is, by its schedule).
local function openSale(now)
  local st = readState()
  if not st then return nil, {-11} end
  if now < st.starts or now >= st.closes then return nil, {-10, ms(now)} end
  sweep(st, now)
  return st
end
