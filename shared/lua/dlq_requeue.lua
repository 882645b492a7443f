-- Put dead letters back on their send streams, each at most once however many callers race.
-- A requeued message takes a new place at the end of its chat's order.
-- KEYS: dlq index, dlq payloads, dlq meta, send high, normal, low.
-- ARGV[1]: lifetime of per-chat order state, seconds; then pairs of message id and the new
-- member "<priority code>|<chat state key>|<payload>" to queue.
local target = {h = KEYS[4], n = KEYS[5], l = KEYS[6]}
local ttl = tonumber(ARGV[1])
local moved = 0
for i = 2, #ARGV, 2 do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    local member = ARGV[i + 1]
    local rest = string.sub(member, 3)
    local bar = string.find(rest, '|', 1, true)
    local chat = string.sub(rest, 1, bar - 1)
    local stream = target[string.sub(member, 1, 1)]
    if chat == '' then
      redis.call('XADD', stream, '*', 'd', string.sub(rest, bar + 1))
    else
      local seq = redis.call('HINCRBY', chat, 'seq', 1)
      redis.call('EXPIRE', chat, ttl)
      redis.call('XADD', stream, '*', 'd', string.sub(rest, bar + 1), 's', seq)
    end
    moved = moved + 1
  end
end
return moved
