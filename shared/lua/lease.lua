-- Hold a lease: take it if free, renew it if ours. KEYS[1]: the lease; ARGV: holder, ms.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
