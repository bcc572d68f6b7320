-- Records that a node is alive until now + ttl, in Redis server time (so
-- relays with skewed clocks agree on who is dead), and how many WebSockets
-- it holds.
-- KEYS: nodes, online
-- ARGV: node, ttl (ms), mode: 'set' (a heartbeat) or 'nx' (first sight of a
--       node through a join: only if the node is unknown), connections
-- Returns {the node's deadline now, Redis's now} (unix ms), so the caller
-- knows how long the node stays registered.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[2])
if ARGV[3] == 'nx' then
  redis.call('ZADD', KEYS[1], 'NX', deadline, ARGV[1])
  deadline = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) or deadline
else
  redis.call('ZADD', KEYS[1], deadline, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4] or '0')
end
return {deadline, now}
