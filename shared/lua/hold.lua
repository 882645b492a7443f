-- Put a scope on hold for ARGV[1] ms unless a longer hold is already in place.
-- A bot (KEYS: its hold key, its adaptation hash; ARGV: hold ms, cut, floor, recovery per
-- second): the hold is a key that expires, and the bot's adaptive rate factor is cut:
-- new = max(floor, current * cut), where the current factor has been recovering linearly since
-- the last cut.
-- A chat (KEYS: the bot's chat holds hash; ARGV: hold ms, chat id): the hold is a field of the
-- hash, the moment it ends (ms, server time), so acquire.lua checks every chat of a batch with
-- one EXISTS while no chat of the bot is held. Ended holds are dropped here.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ms = tonumber(ARGV[1])

if #KEYS == 1 then
  local ends = redis.call('HGETALL', KEYS[1])
  for i = 1, #ends, 2 do
    if tonumber(ends[i + 1]) <= now then redis.call('HDEL', KEYS[1], ends[i]) end
  end
  local until_ms = math.ceil(now + ms)
  if tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or 0) < until_ms then
    redis.call('HSET', KEYS[1], ARGV[2], string.format('%d', until_ms))
  end
  if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], ms) end
  return 0
end

if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
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
