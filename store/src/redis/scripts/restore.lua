-- Writes back what a relay holds about a live room after Redis lost it (or
-- swept the relay's members): the record unless it exists, and each of the
-- relay's members that is missing while the room has room. Idempotent.
-- KEYS: room, members, room nodes
-- ARGV: node, now (unix s), grace after expiry (s), created, expiresAt,
--       ephemeral, password, capacity, listed (0|1), kept while empty (0|1),
--       owner hash (extension; empty: no owner), then per member: id, record (the relay's encoding, as join.lua),
--       joinedAt (unix ms)
-- Returns {'EXPIRED'} or {'OK', recreated (0|1), {per member: 'present' |
--   'added' | 'full' | 'taken'}, {ids of the members that joined since the
--   record was last recreated (join counter above 0)}}.
-- A restored member gets the join counter of the last member still there
-- who joined before it (0 if none): the list (ordered by counter, then join
-- time) shows it where it was, ahead of members who joined after it.
local recreated = 0
local expires_at = tonumber(ARGV[5]) or 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  if expires_at > 0 and tonumber(ARGV[2]) > expires_at then
    return {'EXPIRED'}
  end
  redis.call('HSET', KEYS[1],
    'created', ARGV[4], 'expiresAt', ARGV[5], 'ephemeral', ARGV[6],
    'password', ARGV[7], 'capacity', ARGV[8], 'listed', ARGV[9], 'seq', 0,
    'keepEmpty', ARGV[10], 'owner', ARGV[11])
  recreated = 1
end
local capacity = tonumber(redis.call('HGET', KEYS[1], 'capacity')) or 0
-- (counter, join time) of the members still there.
local placed = {}
local joined_since = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 2, #all, 2 do
  local record = all[i]
  local colon = string.find(record, ':', 1, true)
  if colon then
    local ok, member = pcall(cmsgpack.unpack, string.sub(record, colon + 1))
    local seq = tonumber(string.sub(record, 1, colon - 1)) or 0
    if ok and type(member) == 'table' then
      placed[#placed + 1] = {seq, tonumber(member[4]) or 0}
    end
    if seq > 0 then
      joined_since[#joined_since + 1] = all[i - 1]
    end
  end
end
local outcomes = {}
local added = 0
for i = 12, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[2], id) == 1 then
    -- Ours (the id is random per connection), or a stranger's: tell apart
    -- by the node inside the record.
    local record = redis.call('HGET', KEYS[2], id)
    local colon = string.find(record, ':', 1, true)
    local ok, member = false, nil
    if colon then
      ok, member = pcall(cmsgpack.unpack, string.sub(record, colon + 1))
    end
    if ok and type(member) == 'table' and member[3] == ARGV[1] then
      outcomes[#outcomes + 1] = 'present'
    else
      outcomes[#outcomes + 1] = 'taken'
    end
  elseif redis.call('HLEN', KEYS[2]) >= capacity then
    outcomes[#outcomes + 1] = 'full'
  else
    local joined_at = tonumber(ARGV[i + 2]) or 0
    local seq = 0
    for _, p in ipairs(placed) do
      if p[2] <= joined_at and p[1] > seq then
        seq = p[1]
      end
    end
    redis.call('HSET', KEYS[2], id, string.format('%d', seq) .. ':' .. ARGV[i + 1])
    added = added + 1
    outcomes[#outcomes + 1] = 'added'
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[3], ARGV[1], added)
elseif recreated == 1 then
  -- Nobody could be put back: leave no empty record behind.
  redis.call('DEL', KEYS[1])
  recreated = 0
end
-- The room's lifetime, as join.lua gives it.
if expires_at > 0 then
  local at = expires_at + tonumber(ARGV[3])
  for k = 1, 3 do
    if redis.call('EXISTS', KEYS[k]) == 1 then
      redis.call('EXPIREAT', KEYS[k], at)
    end
  end
elseif redis.call('HLEN', KEYS[2]) > 0 then
  redis.call('PERSIST', KEYS[1])
end
return {'OK', recreated, outcomes, joined_since}
