--[[
  items_if_ready: a shard's holds and sales, read together with whether it is initialised, for the rebuild of
  another shard of the same split sale (src/redis/lifecycle.ts): its users are counted from every shard.

  KEYS[1..8] the shard's keys, as listed in prelude.lua

  Returns false if the shard is not initialised, else {code, code record, code, code record, ...}: every
  live hold (tentative ones included, whose slots a lost user shard may have taken) and every sale.
]]
if not readState() then return false end
return rcall('HGETALL', codesKey)
