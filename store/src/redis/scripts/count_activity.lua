-- Counts one chat message in a listed room's activity window, keeping only
-- the window and at most `cap` entries.
-- KEYS: room, activity
-- ARGV: now (ms), unique token, window (ms), cap
if redis.call('HGET', KEYS[1], 'inDirectory') ~= '1' then
  return 0
end
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf',
  '(' .. string.format('%d', now - tonumber(ARGV[3])))
local n = redis.call('ZCARD', KEYS[2])
local cap = tonumber(ARGV[4])
if n > cap then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - cap - 1)
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
