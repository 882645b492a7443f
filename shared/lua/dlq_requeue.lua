-- Put dead letters back on their send streams, each at most once however many callers race.
-- A requeued message takes a new place at the end of its chat's order.
-- KEYS: dlq index, dlq payloads, dlq meta, send high, normal, low, then the chat state keys of
-- the members (declared, so the script touches only declared keys of one slot).
-- ARGV[1]: lifetime of per-chat order state, seconds; then triples of message id, the new
-- routed member (see promote.lua) to queue, and the index in KEYS of its chat state key (0 for
-- a member without one).
local target = {h = KEYS[4], n = KEYS[5], l = KEYS[6]}
local ttl = tonumber(ARGV[1])
-- A member is "<priority code>:<length>:<chat state key><payload>" (the key may be empty); one
-- written before the length prefix, "<code>|<chat state key>|<payload>", is read as written.
local function unroute(member)
  local code = string.sub(member, 1, 1)
  if string.sub(member, 2, 2) == '|' then
    local bar = string.find(member, '|', 3, true)
    return code, string.sub(member, bar + 1)
  end
  local colon = string.find(member, ':', 3, true)
  local stop = colon + tonumber(string.sub(member, 3, colon - 1))
  return code, string.sub(member, stop + 1)
end
local moved = 0
for i = 2, #ARGV, 3 do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    local code, payload = unroute(ARGV[i + 1])
    local stream = target[code]
    local chat = tonumber(ARGV[i + 2])
    if chat == 0 then
      redis.call('XADD', stream, '*', 'd', payload)
    else
      local seq = redis.call('HINCRBY', KEYS[chat], 'seq', 1)
      redis.call('EXPIRE', KEYS[chat], ttl)
      redis.call('XADD', stream, '*', 'd', payload, 's', seq)
    end
    moved = moved + 1
  end
end
return moved
