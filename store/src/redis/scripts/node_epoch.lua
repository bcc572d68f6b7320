-- Checks whether Redis still holds what this engine recorded for a relay
-- node, and records it (again).
-- KEYS: the node's epoch key
-- ARGV: this engine's token, ttl (ms)
-- Returns 'known' (the token was there), 'swept' (another relay swept the
-- node as dead) or 'lost' (nothing there: Redis lost it, or the first check).
local was = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if was == ARGV[1] then
  return 'known'
elseif was == 'swept' then
  return 'swept'
end
return 'lost'
