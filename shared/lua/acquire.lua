-- Take one send token for a bot and a chat, or say how long to wait. Sliding logs: a send is
-- granted only if, for the bot and for the chat, fewer than LIMIT sends lie in the last WINDOW
-- (plus margin). Refusals take nothing. Time comes from the server so every replica agrees.
-- After a 429 the bot's limit is scaled down by a factor that recovers linearly with time.
-- KEYS: bot hold, chat hold, bot log, chat log, bot adaptation (one {bot:<id>} slot)
-- ARGV: bot limit, bot window ms, chat limit, chat window ms, unique member suffix,
--       recovery of the factor per second
-- Returns {0, '', factor permille} when granted, else {wait ms, scope, factor permille}.
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
if hold > 0 then return {hold, 'bot_hold', permille} end
hold = redis.call('PTTL', KEYS[2])
if hold > 0 then return {hold, 'chat_hold', permille} end

local function wait_for(key, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) < limit then return 0 end
  local oldest = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
  return math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
end

-- A bot's window is also spread over its quarters (a quarter of the sends per quarter window),
-- so a cold start does not fire the whole window at once: a burst that leaves together arrives
-- spread out and can break the window at Telegram's end by more than the margin.
local function burst_wait(key, limit, window)
  local burst = math.ceil(limit / 4)
  if limit < 8 then return 0 end
  local recent = redis.call('ZRANGE', key, -burst, -burst, 'WITHSCORES')
  if #recent == 0 or tonumber(recent[2]) <= now - window / 4 then return 0 end
  return math.max(1, math.ceil(tonumber(recent[2]) + window / 4 - now))
end

local bot_limit = math.max(1, math.floor(tonumber(ARGV[1]) * factor))
local bot_wait = wait_for(KEYS[3], bot_limit, tonumber(ARGV[2]))
if bot_wait == 0 then bot_wait = burst_wait(KEYS[3], bot_limit, tonumber(ARGV[2])) end
local chat_wait = wait_for(KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[4]))
if bot_wait > 0 or chat_wait > 0 then
  if bot_wait >= chat_wait then return {bot_wait, 'bot', permille} end
  return {chat_wait, 'chat', permille}
end
local member = tostring(now_us) .. ':' .. ARGV[5]
redis.call('ZADD', KEYS[3], now, member)
redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[2])) + 1000)
redis.call('ZADD', KEYS[4], now, member)
redis.call('PEXPIRE', KEYS[4], math.ceil(tonumber(ARGV[4])) + 1000)
return {0, '', permille}
