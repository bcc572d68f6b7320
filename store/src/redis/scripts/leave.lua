-- Removes a member held by the calling relay node; destroys the room when
-- it empties, unless it is kept while empty (a daily topic lives until its
-- keys expire). The node comes from the caller (a relay only ever removes
-- its own members), so nothing is read back and unpacked.
-- KEYS: room, members, room nodes, activity
-- ARGV: member id, node
-- Returns one integer of flags (one reply part for the relay to parse):
-- 1 was a member, 2 the room was destroyed, 4 the last member of its node
-- in the room.
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then
  return 0
end
if redis.call('HLEN', KEYS[2]) == 0 and redis.call('HGET', KEYS[1], 'keepEmpty') ~= '1' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return 1 + 2 + 4
end
if redis.call('HINCRBY', KEYS[3], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[3], ARGV[2])
  return 1 + 4
end
return 1
