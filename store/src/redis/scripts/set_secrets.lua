-- Changes a room's password hash and/or owner hash (extension), atomically
-- with the check that the caller holds the room's owner hash.
-- KEYS: room
-- ARGV: expected owner hash (non-empty), new password hash ('' = keep),
--       new owner hash ('' = keep)
-- Returns 'OK', 'NOT_FOUND' or 'NOT_OWNER'.
local owner = redis.call('HGET', KEYS[1], 'owner')
if not redis.call('HGET', KEYS[1], 'created') then
  return 'NOT_FOUND'
end
if ARGV[1] == '' or owner ~= ARGV[1] then
  return 'NOT_OWNER'
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'password', ARGV[2])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'owner', ARGV[3])
end
return 'OK'
