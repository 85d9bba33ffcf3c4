--[[
  note: keeps refusals an instance answered from what Redis told it (src/redis/known.ts): a sale it was told is sold
  out, an item it was told is sold, within a second of that reply. One call keeps a batch of them, as lua/checkout.lua
  keeps its own: one journal entry, and the sale's counter of refused checkouts, in one atomic step. So they are
  counted once, on every instance's /status, and kept in the store by the same path as every other decision.

  KEYS[1..8] the part's keys, as listed in prelude.lua
  ARGV[1] now_ms      Unix ms to keep them at; '' uses Redis TIME (production)
  ARGV[2] sale_id
  ARGV[3] the journal's lines, in lua/checkout.lua's format ("item_id user_id status" and three empty fields)
  ARGV[4] how many lines
  ARGV[5] what every line says: 'sold_out' or 'item_sold'

  Returns {0, now_ms, journal_entry_id}; or, keeping nothing: {-10, now_ms} the sale is not open, {-11} not ready,
  {-20} stale, by what the sale's state says at once: not sold out any more (a restock, a rebuild that lost
  purchases) for sold_out; sold out (which comes first) or paused (which comes before item_sold) for item_sold.
  The server then asks lua/checkout.lua instead. An item sold is not checked here (it would read every item):
  the second bound covers it.
]]
local now = clock(ARGV[1])
local st, undecided = openSale(now)
if not st then return undecided end
local soldOut = st.sold >= st.units
if ARGV[5] == 'sold_out' then
  if not soldOut then return {-20} end
elseif soldOut or st.paused then
  return {-20}
end
local id = rcall('XADD', logKey, '*', 'e', 'c', 't', ms(now), 'd', ARGV[3])
rcall('HINCRBY', stateKey, 'c_rej', tonumber(ARGV[4]))
return {0, now, id}
