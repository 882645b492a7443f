-- Drop the dead letters that died longer ago than a retention: the oldest first, at most a
-- given number a call (the caller calls again while it gets that many).
-- KEYS: the dead-letter index (sorted set: message id -> when it died, ms, server time), its
--       payloads and its meta (hashes by message id); one slot
-- ARGV: retention (ms), most to drop
-- Returns how many were dropped.
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
local ids = redis.call('ZRANGE', KEYS[1], '-inf', string.format('%d', cutoff), 'BYSCORE',
  'LIMIT', 0, ARGV[2])
if #ids == 0 then return 0 end
redis.call('ZREM', KEYS[1], unpack(ids))
redis.call('HDEL', KEYS[2], unpack(ids))
redis.call('HDEL', KEYS[3], unpack(ids))
return #ids
