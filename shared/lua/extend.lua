-- A call is still under way: its token stays in the bot's in-flight set for another lease.
-- Tokens of a sender that died are not extended, so they are given up a lease after its death
-- rather than after the longest possible call. Only tokens still there are extended (XX).
-- KEYS: bot in-flight tokens; ARGV: lease ms, tickets...
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', 'GT', now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 1000)
return #ARGV - 1
