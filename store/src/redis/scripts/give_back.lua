-- Gives back units taken from fixed-window budgets (a guess that was never
-- verified, or was right). Never below zero; a counter at zero is removed.
-- KEYS: counters (one slot)
for _, key in ipairs(KEYS) do
  local used = tonumber(redis.call('GET', key) or '0')
  if used <= 1 then
    redis.call('DEL', key)
  else
    redis.call('DECR', key)
  end
end
return 1
