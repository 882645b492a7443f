-- Put a scope on hold for ARGV[1] ms unless a longer hold is already in place. For a whole bot
-- (KEYS[2] given) also cut its adaptive rate factor: new = max(floor, current * cut), where the
-- current factor has been recovering linearly since the last cut.
-- KEYS[1]: the hold key; KEYS[2]: the bot's adaptation hash (bot holds only).
-- ARGV: hold ms, then for a bot: cut, floor, recovery per second.
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', tonumber(ARGV[1]))
end
if KEYS[2] == nil then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local recover = tonumber(ARGV[4])
local factor = 1.0
local adapt = redis.call('HMGET', KEYS[2], 'f', 't')
if adapt[1] then
  factor = math.min(1.0, tonumber(adapt[1]) + (now - tonumber(adapt[2])) / 1000 * recover)
end
factor = math.max(tonumber(ARGV[3]), factor * tonumber(ARGV[2]))
redis.call('HSET', KEYS[2], 'f', tostring(factor), 't', tostring(now))
redis.call('PEXPIRE', KEYS[2], math.ceil((1 - factor) / recover * 1000) + 1000)
return math.floor(factor * 1000)
