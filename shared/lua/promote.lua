-- Move due members of a delay set to their send streams, oldest first.
-- A member is "<priority code>|<chat state key or empty>|<payload>": with a chat state key the
-- entry gets the chat's next sequence number (a message entering the order for the first time).
-- KEYS[1]: delay set; KEYS[2..4]: send streams high, normal, low.
-- ARGV[1]: most to move; ARGV[2]: lifetime of per-chat order state, seconds.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGE', KEYS[1], '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
local target = {h = KEYS[2], n = KEYS[3], l = KEYS[4]}
for _, member in ipairs(due) do
  local rest = string.sub(member, 3)
  local bar = string.find(rest, '|', 1, true)
  local chat = string.sub(rest, 1, bar - 1)
  local payload = string.sub(rest, bar + 1)
  local stream = target[string.sub(member, 1, 1)]
  if chat == '' then
    redis.call('XADD', stream, '*', 'd', payload)
  else
    local seq = redis.call('HINCRBY', chat, 'seq', 1)
    redis.call('EXPIRE', chat, tonumber(ARGV[2]))
    redis.call('XADD', stream, '*', 'd', payload, 's', seq)
  end
  redis.call('ZREM', KEYS[1], member)
end
return #due
