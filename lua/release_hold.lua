--[[
  release_hold: an operator ends a live hold by hand (DELETE /admin/holds/{code}).

  The unit goes back to stock and the holder's counts drop, as when the hold expires; the code is forgotten, so
  a purchase with it gets code_not_found. The server has kept the release in the durable store first
  (hold_releases), so no rebuild brings the hold back. A split sale's user shard learns of it when it asks the
  item shard (lua/shard_verify.lua), as for an expiry.

  KEYS[1..8] the part's keys (the shard the code names), as listed in prelude.lua
  ARGV[1] now_ms     Unix ms; '' uses Redis TIME (production)
  ARGV[2] sale_id    the sale
  ARGV[3] code

  Returns {0, item_id, unit, user_id, expires_ms} released; {-7} the code was bought; {-6} no live hold has it
  (never issued, expired, released, or a split sale's hold not answered yet); {-11} the part is not initialised.
]]
local now = clock(ARGV[1])
local st = readState()
if not st then return {-11} end
sweep(st, now)
local code = ARGV[3]
local kind, item, unit, expires, user = getCode(code)
if kind == 'p' then return {-7} end
if kind ~= 'h' then return {-6} end
endHold(st, code, kind, item, unit, expires, user)
rcall('HINCRBY', stateKey, 'held', -1)
return {0, item, unit, user, ms(expires)}
