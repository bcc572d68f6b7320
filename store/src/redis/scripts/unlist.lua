-- Removes rooms from the public directory.
-- KEYS: listings, regular listings
-- ARGV: room ids
for i = 1, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('SREM', KEYS[2], ARGV[i])
end
return #ARGV
