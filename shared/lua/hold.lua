-- Put a scope on hold for ARGV[1] ms unless a longer hold is already in place.
-- KEYS[1]: the hold key.
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[1]))
  return 1
end
return 0
