-- Removes a member; destroys the room when it empties (unless it is kept
-- while empty: a daily topic lives until its keys expire).
-- KEYS: room, members, room nodes, activity
-- ARGV: member id
-- Returns {was member, destroyed, last of its node in the room, node}.
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then
  return {0, 0, 0, ''}
end
redis.call('HDEL', KEYS[2], ARGV[1])
local ok, member = pcall(cmsgpack.unpack, raw)
local node = ''
if ok and type(member) == 'table' and type(member.node) == 'string' then
  node = member.node
end
local last_of_node = 0
if node ~= '' and redis.call('HINCRBY', KEYS[3], node, -1) <= 0 then
  redis.call('HDEL', KEYS[3], node)
  last_of_node = 1
end
if redis.call('HLEN', KEYS[2]) == 0 and redis.call('HGET', KEYS[1], 'keepEmpty') ~= '1' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return {1, 1, last_of_node, node}
end
return {1, 0, last_of_node, node}
