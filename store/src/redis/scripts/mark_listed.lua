-- Marks an existing room as listed (its chat activity is counted from now).
-- KEYS: room
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'listed', '1', 'inDirectory', '1')
  return 1
end
return 0
