-- Granted sends are over: move their tokens in the bot's and their chats' logs from the future
-- (where acquire.lua put them while their calls were under way) to now, when their answers are
-- in hand and Telegram has surely seen them. One trimmed away meanwhile (its sender stopped
-- extending it for longer than a lease) comes back, counted from now.
-- With an age, a send made elsewhere (by a sender limiting on its own while Redis was away) is
-- logged as made that long ago; such a hand-over only ever moves a token later (GT), since the
-- same send may already be logged from the end of its call.
-- KEYS: bot log, then one chat log per token (one {bot:<id>} slot)
-- ARGV: bot window ms, lease ms, private window ms, group window ms, kinds (one letter per
--       token: p private, g group), then per token: ticket, age ms (0: now)
-- Lifetimes as in acquire.lua: window + lease + 1 s from each write.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local lease = tonumber(ARGV[2])
local windows = {p = tonumber(ARGV[3]), g = tonumber(ARGV[4])}

for i = 2, #KEYS do
  local at = 6 + (i - 2) * 2
  local ticket, age = ARGV[at], tonumber(ARGV[at + 1])
  if age > 0 then
    redis.call('ZADD', KEYS[1], 'GT', now - age, ticket)
    redis.call('ZADD', KEYS[i], 'GT', now - age, ticket)
  else
    redis.call('ZADD', KEYS[1], now, ticket)
    redis.call('ZADD', KEYS[i], now, ticket)
  end
  local window = windows[string.sub(ARGV[5], i - 1, i - 1)]
  redis.call('PEXPIRE', KEYS[i], math.ceil(window + lease + 1000))
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) + lease + 1000))
return #KEYS - 1
