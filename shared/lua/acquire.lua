-- Take one send token for a bot and a chat, or say how long to wait. Sliding logs: a send is
-- granted only if, for the bot and for the chat, fewer than LIMIT sends lie in the last WINDOW
-- (plus the configured margin). Refusals take nothing. Time comes from the server so every
-- replica agrees.
-- After a 429 the bot's limit is scaled down by a factor that recovers linearly with time.
-- KEYS: bot hold, chat hold, bot log, chat log, bot adaptation, bot in-flight tokens
--       (one {bot:<id>} slot)
-- ARGV: bot limit, bot window ms, chat limit, chat window ms, ticket (unique member),
--       recovery of the factor per second, lease of an in-flight token (ms; the sender
--       extends it while the call runs, see extend.lua)
-- Returns {0, '', factor permille, room} when granted, else {wait ms, scope, factor permille,
-- room}; room is how many more sends the bot's window takes now.
-- Tokens are counted from their grant until Limiter.sent moves them to the end of their call
-- (sent.lua), which is after Telegram saw them: no margin for the jitter between the two.
-- A token whose call is still under way when its window has passed is not dropped: it may
-- reach Telegram any moment, so it is counted as if sent now, again and again, until its call
-- is over (or it is given up as lost with a sender that died).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = now_us / 1000

local factor = 1.0
local adapt = redis.call('HMGET', KEYS[5], 'f', 't')
if adapt[1] then
  factor = math.min(1.0, tonumber(adapt[1]) + (now - tonumber(adapt[2])) / 1000 * tonumber(ARGV[6]))
end
local permille = math.floor(factor * 1000)

local hold = redis.call('PTTL', KEYS[1])
if hold > 0 then return {hold, 'bot_hold', permille, 0} end
hold = redis.call('PTTL', KEYS[2])
if hold > 0 then return {hold, 'chat_hold', permille, 0} end

local lease = tonumber(ARGV[7])

-- A log lives at least ms more (never shortened: other tokens in it may be in flight).
local function keep(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, math.ceil(ms)) end
end

local function trim(key, window)
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', now - window)
  if #old == 0 then return end
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)  -- tokens given up as lost
  local kept = false
  for _, member in ipairs(old) do
    if redis.call('ZSCORE', KEYS[6], member) then
      redis.call('ZADD', key, now, member)
      kept = true
    else
      redis.call('ZREM', key, member)
    end
  end
  if kept then keep(key, window + lease + 1000) end
end

local function wait_for(key, limit, window)
  trim(key, window)
  if redis.call('ZCARD', key) < limit then return 0 end
  local oldest = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
  return math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
end

local bot_limit = math.max(1, math.floor(tonumber(ARGV[1]) * factor))
local bot_wait = wait_for(KEYS[3], bot_limit, tonumber(ARGV[2]))
local chat_wait = wait_for(KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[4]))
if bot_wait > 0 or chat_wait > 0 then
  if bot_wait >= chat_wait then return {bot_wait, 'bot', permille, 0} end
  return {chat_wait, 'chat', permille, bot_limit - redis.call('ZCARD', KEYS[3])}
end
local member = ARGV[5]
redis.call('ZADD', KEYS[6], now + lease, member)
keep(KEYS[6], lease + 1000)
-- the logs outlive the token's lease: it may still be in flight when its window has passed
redis.call('ZADD', KEYS[3], now, member)
keep(KEYS[3], tonumber(ARGV[2]) + lease + 1000)
redis.call('ZADD', KEYS[4], now, member)
keep(KEYS[4], tonumber(ARGV[4]) + lease + 1000)
return {0, '', permille, bot_limit - redis.call('ZCARD', KEYS[3])}
