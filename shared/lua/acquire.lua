-- Take send tokens for one bot and a list of its chats, or say how long each must wait. Sliding
-- logs: a send is granted only if, for the bot and for the chat, fewer than LIMIT sends lie in
-- the last WINDOW. The chats are decided in order, each exactly as one call of its own would be
-- one after another; a bot's pacer asks for as many tokens as its window has room for in one
-- call. Refusals take nothing. Time comes from the server so every replica agrees.
-- After a 429 the bot's limit is scaled down by a factor that recovers linearly with time.
-- KEYS: bot hold, bot log, bot adaptation, the bot's chat holds (hash: chat id -> until, ms),
--       then one log per chat (one {bot:<id>} slot)
-- ARGV: bot limit, bot window ms, recovery of the factor per second, lease of a call under way
--       (ms), private chat limit, private window ms, group limit, group window ms, ticket
--       prefix, number of the first ticket, kinds (one letter per chat: p private, g group),
--       then one chat id per chat. The tokens are named <prefix>-<first>, <prefix>-<first + 1>,
--       ... in chat order.
-- Returns {factor permille, then per chat: wait ms, scope, room, then the server's clock in
-- whole ms}: wait 0 means granted; room is how many more sends the bot's window takes after
-- that decision. The clock tells sent.lua, when a token moves, what lifetime its logs were
-- given at the grant.
--
-- A granted token is logged in the future, at now + lease: its call is under way, and it may
-- reach Telegram any moment until it is over, so it counts in every window until then. The
-- sender pushes it further while the call runs (extend.lua) and moves it to the end of the call
-- when the answer is in (sent.lua), which is after Telegram saw it: no margin for the jitter
-- between grant and arrival. A sender that dies stops extending its tokens, so they leave the
-- windows a lease and a window later.
-- Every log is set to live its window + a lease + 1 s from each write: no token in it is
-- scored later than a lease from now, so the lifetime is never cut short for any of them.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = #KEYS - 4

local factor = 1.0
local adapt = redis.call('HMGET', KEYS[3], 'f', 't')
if adapt[1] then
  factor = math.min(1.0, tonumber(adapt[1]) + (now - tonumber(adapt[2])) / 1000 * tonumber(ARGV[3]))
end
local out = {math.floor(factor * 1000)}

local function answer(wait, scope, room)
  out[#out + 1] = wait
  out[#out + 1] = scope
  out[#out + 1] = room
end

local hold = redis.call('PTTL', KEYS[1])
if hold > 0 then
  for _ = 1, n do answer(hold, 'bot_hold', 0) end
  out[#out + 1] = math.floor(now)
  return out
end

local lease = tonumber(ARGV[4])
-- Scores are whole milliseconds, rounded later (never early): a small sorted set is a listpack
-- that Redis scans on every insert, reading integer scores as they are but parsing every
-- fractional one with strtod (7 us against 3 us a ZADD in a log of 70 tokens, measured)
local until_ms = math.ceil(now + lease)
-- numbers handed to redis.call are printed with %.17g on every call: the grant's score and the
-- logs' lifetimes are printed once here instead, for every token of the call
local until_text = string.format('%d', until_ms)

-- How long until a log whose limit-th newest token is scored ``nth`` takes one more (0: now).
-- A token under way (scored in the future) leaves a window after its call, not sooner.
-- A call's end is stamped in whole milliseconds rounded later, so up to 1 ms past now: such a
-- token has ended, and counts from its stamp; only one scored past that is still under way.
local function wait_after(nth, window)
  if nth == nil or tonumber(nth) <= now - window then return 0 end
  return math.max(1, math.ceil(math.min(tonumber(nth), math.ceil(now)) + window - now))
end

local bot_limit = math.max(1, math.floor(tonumber(ARGV[1]) * factor))
local bot_window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - bot_window)
local bot_size = redis.call('ZCARD', KEYS[2])
-- Tokens granted here join the bot's log in one ZADD at the end; they are its newest.
local taken, fresh = {}, 0
local function bot_wait()
  if bot_size < bot_limit then return 0 end
  if fresh >= bot_limit then return math.ceil(bot_window) end  -- all under way
  local nth = redis.call('ZRANGE', KEYS[2], fresh - bot_limit, fresh - bot_limit, 'WITHSCORES')
  return wait_after(nth[2], bot_window)
end

local function life(window) return string.format('%d', math.ceil(window + lease + 1000)) end
local limits = {
  p = {tonumber(ARGV[5]), tonumber(ARGV[6]), life(tonumber(ARGV[6])), string.format('%d', -tonumber(ARGV[5]))},
  g = {tonumber(ARGV[7]), tonumber(ARGV[8]), life(tonumber(ARGV[8])), string.format('%d', -tonumber(ARGV[7]))},
}
local first, kinds = tonumber(ARGV[10]), ARGV[11]
local chats_held = redis.call('EXISTS', KEYS[4]) == 1
local waiting = bot_wait()
for i = 1, n do
  local chat_log, chat_id = KEYS[4 + i], ARGV[11 + i]
  local chat = limits[string.sub(kinds, i, i)]
  local chat_limit, chat_window = chat[1], chat[2]
  local held = chats_held and tonumber(redis.call('HGET', KEYS[4], chat_id) or 0) or 0
  if held > now then
    answer(math.ceil(held - now), 'chat_hold', 0)
  else
    -- the limit-th newest token alone tells whether the chat's window is full
    local nth = redis.call('ZRANGE', chat_log, chat[4], chat[4], 'WITHSCORES')[2]
    local chat_wait = wait_after(nth, chat_window)
    if waiting > 0 and waiting >= chat_wait then
      answer(waiting, 'bot', 0)
    elseif chat_wait > 0 then
      answer(chat_wait, 'chat', bot_limit - bot_size)
    else
      -- a log that holds a window's worth already drops what left the window
      if nth then redis.call('ZREMRANGEBYSCORE', chat_log, '-inf', now - chat_window) end
      local ticket = string.format('%s-%d', ARGV[9], first + i - 1)
      redis.call('ZADD', chat_log, until_text, ticket)
      redis.call('PEXPIRE', chat_log, chat[3])
      taken[2 * fresh + 1], taken[2 * fresh + 2] = until_text, ticket
      fresh = fresh + 1
      bot_size = bot_size + 1
      waiting = bot_wait()
      answer(0, '', bot_limit - bot_size)
    end
  end
end
if fresh > 0 then
  redis.call('ZADD', KEYS[2], unpack(taken))
  redis.call('PEXPIRE', KEYS[2], math.ceil(bot_window + lease + 1000))
end
out[#out + 1] = math.floor(now)
return out
