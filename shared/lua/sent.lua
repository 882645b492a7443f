-- A granted send is over: move its token in the bot's and the chat's logs to now, when its
-- answer is in hand and Telegram has surely seen it. Tokens only move later (GT); one trimmed
-- away meanwhile (its call took longer than the window) comes back, counted from now.
-- With an age, a send made elsewhere (by a sender limiting on its own while Redis was away)
-- is logged as made that long ago.
-- The token's call is over, so it leaves the bot's in-flight set.
-- KEYS: bot log, chat log, bot in-flight tokens (one {bot:<id>} slot)
-- ARGV: ticket, bot window ms, chat window ms, age ms (0: now)
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000 - tonumber(ARGV[4] or '0')
redis.call('ZADD', KEYS[1], 'GT', now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1000)
redis.call('ZADD', KEYS[2], 'GT', now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[3])) + 1000)
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
