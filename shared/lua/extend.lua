-- Calls still under way: their tokens stay in the bot's in-flight set for another lease, and
-- the logs holding them live at least as long. Tokens of a sender that died are not extended,
-- so they are given up a lease after its death rather than after the longest possible call.
-- Only tokens still there are extended (XX): one whose call ended meanwhile stays ended.
-- KEYS: bot in-flight tokens, bot log, then one chat log per token (one {bot:<id>} slot)
-- ARGV: lease ms, bot window ms, then per token: ticket, chat window ms
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local lease = tonumber(ARGV[1])

local function keep(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, math.ceil(ms)) end
end

for i = 3, #KEYS do
  local at = 3 + (i - 3) * 2
  redis.call('ZADD', KEYS[1], 'XX', 'GT', now + lease, ARGV[at])
  keep(KEYS[i], tonumber(ARGV[at + 1]) + lease + 1000)
end
keep(KEYS[1], lease + 1000)
keep(KEYS[2], tonumber(ARGV[2]) + lease + 1000)
return #KEYS - 2
