-- Adds a room to the public directory unless it is full (daily topics are
-- not counted and always fit).
-- KEYS: listings, regular listings
-- ARGV: room id, msgpack listing, daily topic (0|1), most regular listings
if ARGV[3] ~= '1' and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('SREM', KEYS[2], ARGV[1])
else
  redis.call('SADD', KEYS[2], ARGV[1])
end
return 1
