-- Takes one unit from a fixed-window budget, unless it is spent: the
-- refused attempt is not counted. The window starts at the first take.
-- KEYS: counter
-- ARGV: limit, window (ms)
-- Returns 1 when taken, 0 when the budget was spent.
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
  return 0
end
redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
