-- How many relay nodes are alive: heartbeat deadline not yet passed, in
-- Redis server time (the clock the sweep uses).
-- KEYS: nodes
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], now, '+inf')
