-- Counts a password guess on a room before it is verified, atomically with
-- the room's existence: a room that does not exist (or has no password)
-- gets no counters. A client that has spent its budget on this room is
-- refused and nothing is counted.
-- KEYS: room record, room guesses, this client's guesses on the room
-- ARGV: the client's limit on the room, window (ms)
-- Returns {0} not found, {1} no password, {2} refused,
-- or {3, the room's guesses in the window (this one included), password hash}.
local password = redis.call('HGET', KEYS[1], 'password')
if not password then
  return {0}
end
if password == '' then
  return {1}
end
local mine = tonumber(redis.call('GET', KEYS[3]) or '0')
if mine >= tonumber(ARGV[1]) then
  return {2}
end
local function count(key)
  local v = redis.call('INCR', key)
  if redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, ARGV[2])
  end
  return v
end
count(KEYS[3])
return {3, count(KEYS[2]), password}
