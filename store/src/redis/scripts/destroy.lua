-- Removes a room's keys.
-- KEYS: room, members, room nodes, activity
-- Returns the nodes that held members (their room sets need cleaning).
local nodes = redis.call('HKEYS', KEYS[3])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return nodes
