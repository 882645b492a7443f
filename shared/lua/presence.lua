-- A sender says it is alive (or leaves), and learns how many senders are.
-- KEYS[1]: sorted set of sender names, scored by their last beat (Redis time, ms)
-- ARGV: this sender's name, how long a beat counts (ms), 'beat' or 'leave'
-- Returns the names of the senders that beat within that time, after this call.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[3] == 'leave' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZRANGE', KEYS[1], 0, -1)
