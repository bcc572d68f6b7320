-- The whole of a join in one round trip. Checks, in order: the room
-- exists, is not expired, needs no password (or it was checked), is not
-- full, and the member id is free; then stores the member, counts it on its
-- relay node, and answers with what the relay needs for RoomJoined.
-- KEYS: room, members, room nodes
-- ARGV: member id, member record (the relay's encoding, without the join
--       counter: see keys.rs), node, password checked (0|1), now (unix s),
--       grace after expiry (s)
-- Returns one bulk string: a refusal's name, or the answer in msgpack
--   [first of its node (0|1), created, expiresAt, ephemeral, password,
--    capacity, listed, [id, record, id, record, ...]]
-- (an array of 8: its first byte, 0x98, is never a refusal's letter). One
-- part instead of ~20: parsing a reply costs the relay far more per part
-- than per byte (redis-rs, ~2k instructions a part).
local room = redis.call('HMGET', KEYS[1],
  'expiresAt', 'password', 'capacity', 'created', 'ephemeral', 'listed')
if not room[1] then
  return 'NOT_FOUND'
end
local expires_at = tonumber(room[1]) or 0
if expires_at > 0 and tonumber(ARGV[5]) > expires_at then
  return 'EXPIRED'
end
if room[2] and room[2] ~= '' and ARGV[4] ~= '1' then
  return 'NEEDS_PASSWORD'
end
if redis.call('HLEN', KEYS[2]) >= (tonumber(room[3]) or 0) then
  return 'FULL'
end
-- The counter orders the member list; a refused id only leaves a gap.
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
if redis.call('HSETNX', KEYS[2], ARGV[1], seq .. ':' .. ARGV[2]) == 0 then
  return 'ID_TAKEN'
end
local on_node = redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
-- A joined room lives until its expiry plus the grace, or until it empties.
-- The first join replaces the unjoined TTL of the room record and gives the
-- members hash (new now) the room's lifetime; the node counts hash may be
-- new whenever a node's count starts (it is deleted when the last count
-- goes). A key made here has no TTL, so a room that never expires only
-- needs the record's TTL removed.
if expires_at > 0 then
  local at = expires_at + tonumber(ARGV[6])
  if seq == 1 then
    redis.call('EXPIREAT', KEYS[1], at)
    redis.call('EXPIREAT', KEYS[2], at)
  end
  if on_node == 1 then
    redis.call('EXPIREAT', KEYS[3], at)
  end
elseif seq == 1 then
  redis.call('PERSIST', KEYS[1])
end
local first = 0
if on_node == 1 then first = 1 end
return cmsgpack.pack({first, room[4] or '', room[1], room[5] or '',
  room[2] or '', room[3] or '', room[6] or '', redis.call('HGETALL', KEYS[2])})
