-- Nodes whose heartbeat deadline has passed (Redis server time).
-- KEYS: nodes
-- ARGV: most to return
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now),
  'LIMIT', 0, tonumber(ARGV[1]))
