-- WebSockets held by every live relay; forgets the counts of dead ones.
-- KEYS: nodes, online
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local counts = redis.call('HGETALL', KEYS[2])
local total = 0
for i = 1, #counts, 2 do
  local deadline = redis.call('ZSCORE', KEYS[1], counts[i])
  if deadline and tonumber(deadline) >= now then
    total = total + tonumber(counts[i + 1])
  else
    redis.call('HDEL', KEYS[2], counts[i])
  end
end
return total
