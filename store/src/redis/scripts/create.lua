-- Creates a room record unless the id exists.
-- KEYS: room
-- ARGV: created, expiresAt, ephemeral, password hash, capacity, listed (0|1),
--       ttl in ms (the room vanishes after it unless joined; 0 = no ttl),
--       kept while empty (0|1), owner hash ('' = no owner)
-- Returns 1 when created, 0 when the id exists.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1],
  'created', ARGV[1], 'expiresAt', ARGV[2], 'ephemeral', ARGV[3],
  'password', ARGV[4], 'capacity', ARGV[5], 'listed', ARGV[6], 'seq', 0, 'keepEmpty', ARGV[8], 'owner', ARGV[9])
if tonumber(ARGV[7]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
end
return 1
