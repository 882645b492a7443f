-- Keep a chat's messages in order: may message SEQ of this chat go now?
-- KEYS: chat state (hash: seq, cur), parked set of the chat, the stream the entry came from,
-- the count of parked messages over all chats; optionally the message's status record, marked
-- `sending` when the message goes (only if the record exists: it may have expired).
-- ARGV: seq, consumer group, entry id, lifetime of the state (s).
-- Returns 0: go (it is the chat's next); 3: go, and later messages of the chat are parked
-- behind it; 1: done already (acknowledge, do not send);
-- 2: parked (an earlier message is still under way; the entry is acknowledged and the message
-- waits in the parked set until the earlier one settles and releases it).
-- The payload to park is read from the stream here, not sent with every call: few messages
-- park, and every call would otherwise carry its whole envelope to Redis and into Lua.
local seq = tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'cur') or '0')
if seq == cur + 1 then
  -- one HSET: a record that is there keeps its other fields; one that has expired comes back
  -- as a lone new field, which is deleted again
  if KEYS[5] and redis.call('HSET', KEYS[5], 'status', 'sending') == 1
      and redis.call('HLEN', KEYS[5]) == 1 then
    redis.call('DEL', KEYS[5])
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then return 3 end
  return 0
end
if seq <= cur then return 1 end
-- an entry no longer in the stream was acknowledged by a consumer that claimed it meanwhile
-- and parked or settled it then: nothing is left to park
local found = redis.call('XRANGE', KEYS[3], ARGV[3], ARGV[3])
if found[1] then
  local fields, payload = found[1][2], nil
  for i = 1, #fields, 2 do
    if fields[i] == 'd' then payload = fields[i + 1] end
  end
  if payload and redis.call('ZADD', KEYS[2], seq, payload) == 1 then
    redis.call('INCR', KEYS[4])
  end
  redis.call('EXPIRE', KEYS[2], string.format('%d', tonumber(ARGV[4])))
end
redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[3], ARGV[3])
return 2
