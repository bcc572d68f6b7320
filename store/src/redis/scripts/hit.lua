-- Adds to a fixed-window counter; the window starts at the first hit.
-- KEYS: counter
-- ARGV: n, window (ms)
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
