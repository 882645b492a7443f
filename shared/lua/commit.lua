-- Apply one consumer's changes atomically (see shared.broker.Commit).
-- KEYS[1..3]: dlq index, dlq payloads, dlq meta; KEYS[4..]: keys referenced by index in ARGV.
-- ARGV[1]: consumer group; then records:
--   idem <key#> <message id> <ttl s>   claim an idempotency key (skip the add of that id if taken)
--   ack  <key#> <entry id>             acknowledge and delete a consumed entry
--   add  <key#> <message id> <payload> append to a stream
--   delay <key#> <ms> <member>         add to a delay set, due ms after the server clock
--   dead <message id> <member> <meta>  move to the dead-letter queue
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local group = ARGV[1]
local taken = {}
local result = {}
local i = 2
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'idem' then
    local key = KEYS[tonumber(ARGV[i + 1])]
    local ok = redis.call('SET', key, ARGV[i + 2], 'NX', 'EX', tonumber(ARGV[i + 3]))
    if not ok then
      taken[ARGV[i + 2]] = true
      table.insert(result, ARGV[i + 2])
      table.insert(result, redis.call('GET', key))
    end
    i = i + 4
  elseif op == 'ack' then
    local key = KEYS[tonumber(ARGV[i + 1])]
    redis.call('XACK', key, group, ARGV[i + 2])
    redis.call('XDEL', key, ARGV[i + 2])
    i = i + 3
  elseif op == 'add' then
    if not taken[ARGV[i + 2]] then
      redis.call('XADD', KEYS[tonumber(ARGV[i + 1])], '*', 'd', ARGV[i + 3])
    end
    i = i + 4
  elseif op == 'delay' then
    redis.call('ZADD', KEYS[tonumber(ARGV[i + 1])], now_ms + tonumber(ARGV[i + 2]), ARGV[i + 3])
    i = i + 4
  elseif op == 'dead' then
    redis.call('ZADD', KEYS[1], now_ms, ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
    redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i + 3])
    i = i + 4
  else
    return redis.error_reply('commit: unknown op ' .. tostring(op))
  end
end
return result
