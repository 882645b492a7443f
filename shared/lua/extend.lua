-- Calls still under way: their tokens stay scored a lease ahead (see acquire.lua), and the logs
-- holding them live as long. Tokens of a sender that died are not extended, so they leave the
-- windows a lease and a window after its death rather than after the longest possible call.
-- A token is moved even if its lease ran out (a renewal came late), and put back if it left
-- the logs meanwhile (Redis was away longer than a lease and a window, and the logs trimmed or
-- expired it): its call is under way, so it must count. Only a move that runs after its call's
-- end was logged (a renewal sent just before the end) counts a token longer than needed, never
-- less.
-- KEYS: bot log, then one chat log per token (one {bot:<id>} slot)
-- ARGV: bot window ms, lease ms, private window ms, group window ms, kinds (one letter per
--       token: p private, g group), then one ticket per token (as sent.lua, less the mode)
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000
local lease = tonumber(ARGV[2])
local windows = {p = tonumber(ARGV[3]), g = tonumber(ARGV[4])}
local moved = 0
local until_ms = math.ceil(now + lease)  -- whole milliseconds (see acquire.lua)

for i = 2, #KEYS do
  local ticket = ARGV[4 + i]
  -- GT: only ever later (a token already stamped later stays), and added when missing
  redis.call('ZADD', KEYS[1], 'GT', until_ms, ticket)
  redis.call('ZADD', KEYS[i], 'GT', until_ms, ticket)
  local window = windows[string.sub(ARGV[5], i - 1, i - 1)]
  redis.call('PEXPIRE', KEYS[i], math.ceil(window + lease + 1000))
  moved = moved + 1
end
if moved > 0 then redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) + lease + 1000)) end
return moved
