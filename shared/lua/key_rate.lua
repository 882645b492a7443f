-- Take up to ARGV[3] places in one API key's sliding log of accepted messages.
-- KEYS[1]: the key's log (members: ticket:n, scored by the time they were taken, ms).
-- ARGV: limit (messages per window), window ms, places wanted, ticket (unique per call).
-- At most `limit` entries lie in any window; a refused message takes no place.
-- Returns {taken, ms until the oldest place leaves the window (0 when all were taken)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local take = math.min(wanted, math.max(limit - used, 0))
for i = 1, take do
  redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i)
end
if take > 0 then
  redis.call('PEXPIRE', KEYS[1], window)
end
local wait = 0
if take < wanted then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = tonumber(oldest[2]) + window - now
end
return {take, wait}
