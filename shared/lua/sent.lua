-- Granted sends are over: move their tokens in the bot's and their chats' logs from the future
-- (where acquire.lua put them while their calls were under way) to the end of their calls,
-- when Telegram has surely seen them. Each comes with its age: how long ago, as the sender
-- measured, its call ended (never more than the time really passed, so a stamp is never
-- early). One trimmed away meanwhile (its sender stopped extending it for longer than a lease)
-- comes back, counted from its end.
-- In mode 'later', the sends were made elsewhere (by a sender limiting on its own while Redis
-- was away) and are handed over: a token only ever moves later (GT), since the same send may
-- already be logged from the end of its call.
-- KEYS: bot log, then one chat log per token (one {bot:<id>} slot)
-- ARGV: bot window ms, lease ms, private window ms, group window ms, kinds (one letter per
--       token: p private, g group), mode ('ended' or 'later'), then per token: ticket, age ms
-- Lifetimes as in acquire.lua: window + lease + 1 s from each write.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local lease = tonumber(ARGV[2])
-- numbers handed to redis.call are printed with %.17g on every call: lifetimes are printed
-- once, each stamp once for both logs
local function life(window) return string.format('%d', math.ceil(tonumber(window) + lease + 1000)) end
local lives = {p = life(ARGV[3]), g = life(ARGV[4])}
local later = ARGV[6] == 'later'

-- the bot's log takes every token in one ZADD
local moved = {}
if later then moved[1] = 'GT' end
for i = 2, #KEYS do
  local at = 7 + (i - 2) * 2
  -- whole milliseconds, rounded later (see acquire.lua)
  local ticket = ARGV[at]
  local stamp = string.format('%d', math.ceil(now - tonumber(ARGV[at + 1])))
  if later then
    redis.call('ZADD', KEYS[i], 'GT', stamp, ticket)
  else
    redis.call('ZADD', KEYS[i], stamp, ticket)
  end
  redis.call('PEXPIRE', KEYS[i], lives[string.sub(ARGV[5], i - 1, i - 1)])
  moved[#moved + 1] = stamp
  moved[#moved + 1] = ticket
end
redis.call('ZADD', KEYS[1], unpack(moved))
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) + lease + 1000))
return #KEYS - 1
