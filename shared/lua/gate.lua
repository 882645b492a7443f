-- Keep chats' messages in order: may message SEQ of its chat go now? Many messages a call, each
-- decided in turn exactly as a call of its own would be (shared.redis_batch.MergingBatcher).
-- Messages come in runs that share their stream, the count of parked messages over all chats
-- and the consumer group; those go once, at the start of each run.
-- KEYS, per message: at the start of a run, the stream the entries came from and the parked
-- count; then its chat's state (hash: seq, cur), the chat's parked set and, if it has three
-- keys of its own, its status record, marked `sending` when the message goes (only if the
-- record exists: it may have expired).
-- ARGV: lifetime of a parked set (s); then per message: its number of own keys (2 or 3), plus
-- 10 at the start of a run, followed then by the consumer group; seq; entry id.
-- Returns per message 0: go (it is the chat's next); 3: go, and later messages of the chat are
-- parked behind it; 1: done already (acknowledge, do not send);
-- 2: parked (an earlier message is still under way; the entry is acknowledged and the message
-- waits in the parked set until the earlier one settles and releases it).
-- Safe to run twice for a message (the batcher runs a failed call again one message a call).
local lifetime = string.format('%d', tonumber(ARGV[1]))

--! include order

local function gate(chat, parked, record, stream, count, group, seq, id)
  local state = redis.call('HMGET', chat, 'cur', 'seq', 'xn')
  local cur = tonumber(state[1] or '0')
  local out_of_turn = tonumber(state[3] or '0')
  if out_of_turn > 0 and seq > cur + 1 then
    -- messages settled out of turn right after the cursor (see commit.lua) are passed over
    -- here too: a settle by a process of an earlier release moved the cursor without reading
    -- them, and the message parked after them would wait for good
    local moved
    cur, moved = pass_marks(chat, cur, out_of_turn)
    if moved and seq ~= cur + 1 then
      release(parked, count, stream, cur + 1)
    end
  end
  if seq == cur + 1 then
    -- one HSET: a record that is there keeps its other fields; one that has expired comes
    -- back as a lone new field, which is deleted again
    if record and redis.call('HSET', record, 'status', 'sending') == 1
        and redis.call('HLEN', record) == 1 then
      redis.call('DEL', record)
    end
    -- the chat's last number so far: none after it, none parked behind it (a broadcast's
    -- one message a chat asks nothing more)
    if tonumber(state[2] or '0') > seq and redis.call('EXISTS', parked) == 1 then return 3 end
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
local stream, count, group
local k, a = 1, 2
while a <= #ARGV do
  local own = tonumber(ARGV[a])
  if own >= 10 then
    stream, count, group = KEYS[k], KEYS[k + 1], ARGV[a + 1]
    own, k, a = own - 10, k + 2, a + 1
  end
  local record = own == 3 and KEYS[k + 2] or nil
  out[#out + 1] = gate(KEYS[k], KEYS[k + 1], record, stream, count, group, tonumber(ARGV[a + 1]),
    ARGV[a + 2])
  k = k + own
  a = a + 3
end
return out
