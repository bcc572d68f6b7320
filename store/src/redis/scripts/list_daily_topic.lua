-- Lists a room as the daily topic of one UTC day, unless that day has one:
-- the day's mark and the listing are set together, so of any number of
-- gateways racing for a day exactly one lists its room.
-- KEYS: listings, the day's mark
-- ARGV: room id, msgpack listing, mark ttl (ms)
-- Returns 1 when listed, 0 when the day has its topic already.
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
