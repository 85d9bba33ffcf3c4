--[[
  clock: the TIME of the node that owns a key's slot (on a cluster, TIME alone would go to any master), so
  that a server's estimate of the clock that decides is that master's.

  KEYS[1..8] a part's keys (only their slot matters)

  Returns {seconds, microseconds}, as TIME does.
]]
return rcall('TIME')
