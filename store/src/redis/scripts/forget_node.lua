-- Forgets a swept node, unless it heartbeated again meanwhile.
-- KEYS: nodes
-- ARGV: node
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if deadline and tonumber(deadline) < now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
