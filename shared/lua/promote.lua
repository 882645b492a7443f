-- Move due members of a delay set to their send streams, oldest first.
-- KEYS[1]: delay set; KEYS[2..4]: send streams high, normal, low.  ARGV[1]: most to move.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGE', KEYS[1], '-inf', now_ms, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
local target = {h = KEYS[2], n = KEYS[3], l = KEYS[4]}
for _, member in ipairs(due) do
  redis.call('XADD', target[string.sub(member, 1, 1)], '*', 'd', string.sub(member, 3))
  redis.call('ZREM', KEYS[1], member)
end
return #due
