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
--       token: p private, g group), mode ('ended' or 'later'), the server's clock (ms) at the
--       earliest grant of these tokens (0: unknown), then per token: ticket, age ms
-- Lifetimes as in acquire.lua: window + lease + 1 s from each write. The grant gave its logs
-- that lifetime, and no later write shortens it: a token stamped no later than a lease and a
-- second after the grant, and still in its log, leaves the window before the log expires, so
-- its lifetime is set again only for a longer call, a token that came back, or an unknown grant.
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local lease = tonumber(ARGV[2])
-- numbers handed to redis.call are printed with %.17g on every call: lifetimes are printed
-- once, each stamp once for both logs
local function life(window) return string.format('%d', math.ceil(tonumber(window) + lease + 1000)) end
local lives = {p = life(ARGV[3]), g = life(ARGV[4])}
local later = ARGV[6] == 'later'
local granted = tonumber(ARGV[7])
local covered_until = granted > 0 and granted + lease + 1000 or -1

-- the bot's log takes every token in one ZADD
local moved = {}
local renew_bot = false
if later then moved[1] = 'GT' end
for i = 2, #KEYS do
  local at = 8 + (i - 2) * 2
  -- whole milliseconds, rounded later (see acquire.lua)
  local ticket = ARGV[at]
  local stamp_ms = math.ceil(now - tonumber(ARGV[at + 1]))
  local stamp = string.format('%d', stamp_ms)
  local added
  if later then
    added = redis.call('ZADD', KEYS[i], 'GT', stamp, ticket)
  else
    added = redis.call('ZADD', KEYS[i], stamp, ticket)
  end
  if added == 1 or stamp_ms > covered_until then
    redis.call('PEXPIRE', KEYS[i], lives[string.sub(ARGV[5], i - 1, i - 1)])
    renew_bot = true
  end
  moved[#moved + 1] = stamp
  moved[#moved + 1] = ticket
end
if redis.call('ZADD', KEYS[1], unpack(moved)) > 0 or renew_bot then
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) + lease + 1000))
end
return #KEYS - 1
