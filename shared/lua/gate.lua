-- Keep chats' messages in order: may message SEQ of its chat go now? Many messages a call, each
-- decided in turn exactly as a call of its own would be (shared.redis_batch.MergingBatcher).
-- KEYS, per message: its chat's state (hash: seq, cur), the chat's parked set, the stream the
-- entry came from, the count of parked messages over all chats; and, if it has five keys, its
-- status record, marked `sending` when the message goes (only if the record exists: it may
-- have expired).
-- ARGV: lifetime of a parked set (s); then per message: its number of keys (4 or 5), seq,
-- consumer group, entry id.
-- Returns per message 0: go (it is the chat's next); 3: go, and later messages of the chat are
-- parked behind it; 1: done already (acknowledge, do not send);
-- 2: parked (an earlier message is still under way; the entry is acknowledged and the message
-- waits in the parked set until the earlier one settles and releases it).
-- Safe to run twice for a message (the batcher runs a failed call again one message a call).
local lifetime = string.format('%d', tonumber(ARGV[1]))

local function gate(k, nkeys, seq, group, id)
  local chat, parked, stream, count = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local record = nkeys == 5 and KEYS[k + 4] or nil
  local cur = tonumber(redis.call('HGET', chat, 'cur') or '0')
  if seq == cur + 1 then
    -- one HSET: a record that is there keeps its other fields; one that has expired comes
    -- back as a lone new field, which is deleted again
    if record and redis.call('HSET', record, 'status', 'sending') == 1
        and redis.call('HLEN', record) == 1 then
      redis.call('DEL', record)
    end
    if redis.call('EXISTS', parked) == 1 then return 3 end
    return 0
  end
  if seq <= cur then return 1 end
  -- The payload to park is read from the stream here, not sent with every call: few messages
  -- park. An entry no longer in the stream was acknowledged by a consumer that claimed it
  -- meanwhile and parked or settled it then: nothing is left to park.
  local found = redis.call('XRANGE', stream, id, id)
  if found[1] then
    local fields, payload = found[1][2], nil
    for i = 1, #fields, 2 do
      if fields[i] == 'd' then payload = fields[i + 1] end
    end
    if payload and redis.call('ZADD', parked, seq, payload) == 1 then
      redis.call('INCR', count)
    end
    redis.call('EXPIRE', parked, lifetime)
  end
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  return 2
end

local out = {}
local k, a = 1, 2
while a <= #ARGV do
  local nkeys = tonumber(ARGV[a])
  out[#out + 1] = gate(k, nkeys, tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3])
  k = k + nkeys
  a = a + 4
end
return out
