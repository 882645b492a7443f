-- Put dead letters back on their send streams, each at most once however many callers race.
-- A requeued message takes a new place at the end of its chat's order.
-- KEYS: dlq index, dlq payloads, dlq meta, send high, normal, low.
-- ARGV[1]: lifetime of per-chat order state, seconds; then pairs of message id and the new
-- routed member (see promote.lua) to queue.
local target = {h = KEYS[4], n = KEYS[5], l = KEYS[6]}
local ttl = tonumber(ARGV[1])
-- A member is "<priority code>:<length>:<chat state key><payload>" (the key may be empty); one
-- written before the length prefix, "<code>|<chat state key>|<payload>", is read as written.
local function unroute(member)
  local code = string.sub(member, 1, 1)
  if string.sub(member, 2, 2) == '|' then
    local bar = string.find(member, '|', 3, true)
    return code, string.sub(member, 3, bar - 1), string.sub(member, bar + 1)
  end
  local colon = string.find(member, ':', 3, true)
  local stop = colon + tonumber(string.sub(member, 3, colon - 1))
  return code, string.sub(member, colon + 1, stop), string.sub(member, stop + 1)
end
local moved = 0
for i = 2, #ARGV, 2 do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    local code, chat, payload = unroute(ARGV[i + 1])
    local stream = target[code]
    if chat == '' then
      redis.call('XADD', stream, '*', 'd', payload)
    else
      local seq = redis.call('HINCRBY', chat, 'seq', 1)
      redis.call('EXPIRE', chat, ttl)
      redis.call('XADD', stream, '*', 'd', payload, 's', seq)
    end
    moved = moved + 1
  end
end
return moved
