-- Put dead letters back on their send streams, each at most once however many callers race.
-- KEYS: dlq index, dlq payloads, dlq meta, send high, normal, low.
-- ARGV: pairs of message id and the new routed member to queue.
local target = {h = KEYS[4], n = KEYS[5], l = KEYS[6]}
local moved = 0
for i = 1, #ARGV, 2 do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    local member = ARGV[i + 1]
    redis.call('XADD', target[string.sub(member, 1, 1)], '*', 'd', string.sub(member, 3))
    moved = moved + 1
  end
end
return moved
