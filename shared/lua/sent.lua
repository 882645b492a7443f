-- Granted sends are over: move their tokens in the bot's and their chats' logs to now, when
-- their answers are in hand and Telegram has surely seen them. Tokens only move later (GT);
-- one trimmed away meanwhile (its call took longer than the window) comes back, counted from
-- now. With an age, a send made elsewhere (by a sender limiting on its own while Redis was
-- away) is logged as made that long ago. The tokens' calls are over, so they leave the bot's
-- in-flight set.
-- KEYS: bot log, bot in-flight tokens, then one chat log per token (one {bot:<id>} slot)
-- ARGV: bot window ms, then per token: ticket, chat window ms, age ms (0: now)
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000

-- A log lives at least ms more (never shortened: other tokens in it may be in flight).
local function keep(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, math.ceil(ms)) end
end

for i = 3, #KEYS do
  local at = 2 + (i - 3) * 3
  local ticket, score = ARGV[at], now - tonumber(ARGV[at + 2])
  redis.call('ZADD', KEYS[1], 'GT', score, ticket)
  redis.call('ZADD', KEYS[i], 'GT', score, ticket)
  keep(KEYS[i], tonumber(ARGV[at + 1]) + 1000)
  redis.call('ZREM', KEYS[2], ticket)
end
keep(KEYS[1], tonumber(ARGV[1]) + 1000)
return #KEYS - 2
