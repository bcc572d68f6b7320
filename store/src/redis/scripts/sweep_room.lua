-- Removes every member of a dead node from one room; destroys the room when
-- that empties it (unless it is kept while empty). Atomic, so when several relays sweep at once each member
-- is removed (and reported) by exactly one of them.
-- KEYS: room, members, room nodes, activity
-- ARGV: node
-- Returns {destroyed (0|1), {member ids removed}}.
-- A member record is '<join counter>:<msgpack [name, color, node, joinedAt]>'
-- (keys.rs).
local all = redis.call('HGETALL', KEYS[2])
local removed = {}
for i = 1, #all, 2 do
  local record = all[i + 1]
  local colon = string.find(record, ':', 1, true)
  local ok, member = false, nil
  if colon then
    ok, member = pcall(cmsgpack.unpack, string.sub(record, colon + 1))
  end
  if ok and type(member) == 'table' and member[3] == ARGV[1] then
    redis.call('HDEL', KEYS[2], all[i])
    removed[#removed + 1] = all[i]
  end
end
redis.call('HDEL', KEYS[3], ARGV[1])
local destroyed = 0
if #removed > 0 and redis.call('HLEN', KEYS[2]) == 0
    and redis.call('HGET', KEYS[1], 'keepEmpty') ~= '1' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  destroyed = 1
end
return {destroyed, removed}
