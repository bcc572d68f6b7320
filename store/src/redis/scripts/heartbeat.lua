-- Records that a node is alive until now + ttl, in Redis server time (so
-- relays with skewed clocks agree on who is dead).
-- KEYS: nodes
-- ARGV: node, ttl (ms), mode: 'set' (a heartbeat) or 'nx' (first sight of a
--       node through a join: only if the node is unknown)
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
if ARGV[3] == 'nx' then
  redis.call('ZADD', KEYS[1], 'NX', deadline, ARGV[1])
else
  redis.call('ZADD', KEYS[1], deadline, ARGV[1])
end
return deadline
