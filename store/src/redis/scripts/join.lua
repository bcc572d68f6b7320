-- Adds a member, checking in order: the room exists, is not expired, needs
-- no password (or it was checked), is not full, and the id is free.
-- KEYS: room, members, room nodes
-- ARGV: member id, name, colour, node, joinedAt (ms), password checked (0|1),
--       now (unix s), grace after expiry (s)
-- Returns {refusal} or {'OK', first of its node (0|1), room hash, members hash}.
local room = redis.call('HMGET', KEYS[1], 'expiresAt', 'password', 'capacity')
if not room[1] then
  return {'NOT_FOUND'}
end
local expires_at = tonumber(room[1]) or 0
if expires_at > 0 and tonumber(ARGV[7]) > expires_at then
  return {'EXPIRED'}
end
if room[2] and room[2] ~= '' and ARGV[6] ~= '1' then
  return {'NEEDS_PASSWORD'}
end
if redis.call('HLEN', KEYS[2]) >= (tonumber(room[3]) or 0) then
  return {'FULL'}
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {'ID_TAKEN'}
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[2], ARGV[1], cmsgpack.pack({
  name = ARGV[2], color = ARGV[3], node = ARGV[4],
  joinedAt = tonumber(ARGV[5]), seq = seq }))
local on_node = redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
-- A joined room lives until its expiry plus the grace, or until it empties.
-- Set on the room's first join (the keys keep it; an emptied room is
-- deleted) and when a node's count starts again (its hash may be new).
if seq == 1 or on_node == 1 then
  if expires_at > 0 then
    local at = expires_at + tonumber(ARGV[8])
    for i = 1, 3 do redis.call('EXPIREAT', KEYS[i], at) end
  else
    for i = 1, 3 do redis.call('PERSIST', KEYS[i]) end
  end
end
local first = 0
if on_node == 1 then first = 1 end
return {'OK', first, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
